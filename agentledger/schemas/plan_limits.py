"""A plan asked for more than its workflow allows: what was asked and what it got."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.schemas.envelope import EventBase


class PlanClamp(BaseModel):
    """One setting of one planned subtask, cut back to what the workflow allows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subtask: str  # the planned (local) subtask id
    setting: str  # max_retries | on_failure | default
    asked: JsonValue
    allowed: JsonValue  # what the plan now says (None: the override was dropped)
    reason: str


class PlanClamped(EventBase):
    """Recorded just before the ``task_planned``/``subtask_planned`` that holds the clamped
    plan, so the log shows both the planner's answer and the bound that held."""

    type: Literal["plan_clamped"] = "plan_clamped"
    subtask_id: str = ""  # the delegated subtask a nested plan is for ("" for the task)
    clamps: list[PlanClamp] = Field(min_length=1)
