"""The output contracts of the support-desk agents (typed handoffs between peers).

The ``handoff`` field each routing agent may add to its answer is not declared here: the
runtime adds it to the contract of every agent that has routes in a peer_to_peer workflow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["login", "billing", "performance", "other"]


class Triage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Category
    priority: Literal["low", "normal", "high"]
    summary: str = Field(min_length=1)


class Draft(BaseModel):
    """A specialist's reply to the customer, with the steps it asks them to take."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    reply: str = Field(min_length=1)
    steps: list[str] = Field(min_length=1)
    revision: int = Field(ge=1)


class Review(BaseModel):
    """The reviewer's verdict on a draft; when approved, ``reply`` is what the customer gets."""

    model_config = ConfigDict(extra="forbid")

    approved: bool
    issues: list[str]
    category: Category
    reply: str
    steps: list[str]
    revision: int = Field(ge=1)
