"""Task-level events: a goal comes in, a plan is made, the task ends."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from agentledger.schemas.envelope import EventBase
from agentledger.schemas.failure import FailurePolicy

_POLICY_FIELDS = ("on_failure", "max_retries", "default")


class WorkflowRef(BaseModel):
    """Which workflow a task runs: its name, where it was loaded from, and a digest of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: str | None = None
    digest: str | None = None


class PlannedSubtask(BaseModel):
    """One node of a plan: which agent does what, after which other subtasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    agent: str = Field(min_length=1)
    description: str = ""
    depends_on: list[str] = Field(default_factory=list)
    # Overrides of the agent's failure policy for this subtask (unset: the agent's own).
    on_failure: FailurePolicy | None = None
    max_retries: int | None = Field(default=None, ge=0)
    default: JsonValue = None  # the output dependents get when the subtask is skipped

    @model_serializer(mode="wrap")
    def _omit_unset_overrides(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Overrides appear only when set, so plans without them encode as they always did."""
        data = handler(self)
        for name in _POLICY_FIELDS:
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data


class Plan(BaseModel):
    """The orchestrator's structured output: a DAG of subtasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subtasks: list[PlannedSubtask] = Field(min_length=1)
    rationale: str = ""


class GoalSubmitted(EventBase):
    type: Literal["goal_submitted"] = "goal_submitted"
    # The hard ceiling; the CLI's limit is the setting AGENTLEDGER_MAX_GOAL_CHARS (20,000).
    goal: str = Field(min_length=1, max_length=200_000)
    workflow: WorkflowRef
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    submitted_by: str | None = None


class TaskPlanned(EventBase):
    type: Literal["task_planned"] = "task_planned"
    plan: Plan
    attempt: int = 1


class PlanRejected(EventBase):
    """The orchestrator's plan broke the graph or was not a DAG; it is asked to re-plan."""

    type: Literal["plan_rejected"] = "plan_rejected"
    problems: list[str]
    attempt: int
    will_retry: bool


class TaskCompleted(EventBase):
    type: Literal["task_completed"] = "task_completed"
    result: JsonValue
    result_subtasks: list[str] = Field(default_factory=list)


class TaskFailed(EventBase):
    type: Literal["task_failed"] = "task_failed"
    reason: str
    error_kind: str
    subtask_id: str | None = None


class TaskCancelled(EventBase):
    type: Literal["task_cancelled"] = "task_cancelled"
    reason: str
    requested_by: str | None = None
