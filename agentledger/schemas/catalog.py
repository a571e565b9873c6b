"""The event catalog: every event type joined in one discriminated union."""

from __future__ import annotations

from typing import Annotated, TypeAlias

from pydantic import Field, TypeAdapter

from agentledger.schemas.approvals import (
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
)
from agentledger.schemas.envelope import EventBase
from agentledger.schemas.evaluation import (
    EvalCaseCompleted,
    EvalRunCompleted,
    EvalRunStarted,
    EvalScoreRecorded,
    TaskForked,
)
from agentledger.schemas.failure import FailurePolicyApplied, SubtaskSkipped
from agentledger.schemas.goals import (
    GoalSubmitted,
    PlanRejected,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
)
from agentledger.schemas.guards import (
    CircuitStateChanged,
    ContextSummarized,
    ToolCallRetryScheduled,
)
from agentledger.schemas.handoffs import HandoffAccepted, HandoffRejected, OutputsAggregated
from agentledger.schemas.hierarchy import SubtaskPlanned, SubtaskPlanRejected
from agentledger.schemas.limits import LimitReached
from agentledger.schemas.llm import LlmCallCompleted, LlmCallFailed
from agentledger.schemas.llm_attempts import (
    LlmAttemptFailed,
    LlmFallbackUsed,
    LlmOutputModeLowered,
)
from agentledger.schemas.mcp import McpToolsPinned
from agentledger.schemas.memory import MemoryErased, MemoryWritten
from agentledger.schemas.ownership import RunInterrupted, TaskLeaseTakenOver
from agentledger.schemas.plan_limits import PlanClamped
from agentledger.schemas.provenance import RawValueReleased, UntrustedArgument
from agentledger.schemas.security import InjectionSuspected
from agentledger.schemas.subtasks import (
    AgentOutputProduced,
    AgentStepStarted,
    OutputRejected,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
)
from agentledger.schemas.tools import (
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    ToolCallStarted,
)

Event: TypeAlias = Annotated[
    GoalSubmitted
    | TaskPlanned
    | PlanRejected
    | TaskCompleted
    | TaskFailed
    | TaskCancelled
    | SubtaskAssigned
    | AgentStepStarted
    | AgentOutputProduced
    | OutputRejected
    | SubtaskCompleted
    | SubtaskFailed
    | LlmCallCompleted
    | LlmCallFailed
    | ToolCallRequested
    | ToolCallRejected
    | ToolCallStarted
    | ToolCallCompleted
    | ToolCallFailed
    | LimitReached
    | ApprovalRequested
    | ApprovalGranted
    | ApprovalDenied
    | ApprovalExpired
    | ApprovalEscalated
    | HandoffAccepted
    | HandoffRejected
    | OutputsAggregated
    | FailurePolicyApplied
    | SubtaskSkipped
    | SubtaskPlanned
    | SubtaskPlanRejected
    | CircuitStateChanged
    | ToolCallRetryScheduled
    | ContextSummarized
    | InjectionSuspected
    | LlmAttemptFailed
    | LlmOutputModeLowered
    | LlmFallbackUsed
    | PlanClamped
    | TaskLeaseTakenOver
    | RunInterrupted
    | TaskForked
    | EvalRunStarted
    | EvalCaseCompleted
    | EvalScoreRecorded
    | EvalRunCompleted
    | RawValueReleased
    | UntrustedArgument
    | MemoryWritten
    | MemoryErased
    | McpToolsPinned,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def _collect() -> dict[str, type[EventBase]]:
    out: dict[str, type[EventBase]] = {}
    for cls in EventBase.__subclasses__():
        tag = cls.model_fields["type"].default
        out[tag] = cls
    return out


EVENT_TYPES: dict[str, type[EventBase]] = _collect()
"""Every event class by its ``type`` tag."""

TERMINAL_TYPES = frozenset({"task_completed", "task_failed", "task_cancelled"})
