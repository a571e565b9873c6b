"""The output contract every solver of the swarm shares (so their answers can be combined)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Assessment(BaseModel):
    """One solver's assessment of an incident."""

    model_config = ConfigDict(extra="forbid")

    lens: str
    severity: Literal["sev1", "sev2", "sev3"]
    score: float = Field(ge=0, le=10, description="0 harmless ... 10 worst case")
    evidence: list[str] = Field(description="the phrases of the report the score rests on")
