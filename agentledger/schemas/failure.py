"""Failure-policy events: what the orchestrator decided when a subtask failed."""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import Field, JsonValue

from agentledger.schemas.envelope import EventBase

FailurePolicy: TypeAlias = Literal["fail_task", "retry", "replan", "skip"]
"""What to do when a subtask fails (per agent, overridable per planned subtask)."""

FailureAction: TypeAlias = Literal["retry", "replan", "skip", "fail_task", "fail_parent"]
"""What was done: a policy, or ``fail_task`` / ``fail_parent`` once retries or re-plans ran
out (``fail_parent`` inside a nested plan: the sub-orchestrator's subtask fails)."""

RunningBranches: TypeAlias = Literal["cancel", "finish"]
"""When the task fails, whether subtasks still running are cancelled or finish first."""


class FailurePolicyApplied(EventBase):
    """A subtask failed and its failure policy decided what happens next."""

    type: Literal["failure_policy_applied"] = "failure_policy_applied"
    subtask_id: str
    policy: FailurePolicy
    action: FailureAction
    attempt: int = Field(ge=1)  # the attempt of the subtask that failed
    error_kind: str
    reason: str  # why the subtask failed
    detail: str  # the decision and its numbers, e.g. "retry 1 of 2"
    running: list[str] = Field(default_factory=list)  # fail_task: subtasks still running
    running_branches: RunningBranches | None = None  # fail_task: what happens to them


class SubtaskSkipped(EventBase):
    """A failed subtask was skipped: dependents get ``output`` (the declared default)."""

    type: Literal["subtask_skipped"] = "subtask_skipped"
    subtask_id: str
    output: JsonValue
    reason: str
