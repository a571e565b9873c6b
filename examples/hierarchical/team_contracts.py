"""The researchers' typed output in the hierarchical example."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Findings(BaseModel):
    aspect: str = Field(min_length=1)
    points: list[str] = Field(min_length=1)
