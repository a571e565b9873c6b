"""What each agent of the support workflow hands on: typed outputs, checked at every step."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Triage(BaseModel):
    topic: Literal["refund", "shipping", "warranty", "other"]
    urgent: bool = False
    question: str = Field(min_length=1)


class Findings(BaseModel):
    answer: str | None = None
    source: Literal["memory", "knowledge_base", "none"] = "none"


class Resolution(BaseModel):
    reply: str
    escalate: bool = False


class Outcome(BaseModel):
    reply: str
    ticket: str | None = None
