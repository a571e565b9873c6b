"""Events: the envelope, the catalog (one discriminated union), the codec and upcasters."""

from agentledger.schemas.approvals import (
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
)
from agentledger.schemas.catalog import EVENT_ADAPTER, EVENT_TYPES, TERMINAL_TYPES, Event
from agentledger.schemas.codec import EventDecodeError, decode, encode
from agentledger.schemas.envelope import EventBase, new_event_id, utc_now
from agentledger.schemas.evaluation import (
    EvalCaseCompleted,
    EvalRunCompleted,
    EvalRunStarted,
    EvalScoreRecorded,
    TaskForked,
)
from agentledger.schemas.failure import (
    FailureAction,
    FailurePolicy,
    FailurePolicyApplied,
    RunningBranches,
    SubtaskSkipped,
)
from agentledger.schemas.goals import (
    GoalSubmitted,
    Plan,
    PlannedSubtask,
    PlanRejected,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
    WorkflowRef,
)
from agentledger.schemas.guards import (
    CircuitStateChanged,
    ContextSummarized,
    ToolCallRetryScheduled,
)
from agentledger.schemas.handoffs import (
    HANDOFF_FIELD,
    HandoffAccepted,
    HandoffRejected,
    HandoffRequest,
    OutputsAggregated,
    Vote,
)
from agentledger.schemas.hierarchy import SubtaskPlanned, SubtaskPlanRejected
from agentledger.schemas.limits import LimitReached
from agentledger.schemas.llm import LlmCallCompleted, LlmCallFailed, RecordedToolCall, TokenUsage
from agentledger.schemas.llm_attempts import (
    LlmAttemptFailed,
    LlmFallbackUsed,
    LlmOutputModeLowered,
)
from agentledger.schemas.ownership import RunInterrupted, TaskLeaseTakenOver
from agentledger.schemas.plan_limits import PlanClamp, PlanClamped
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

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "HANDOFF_FIELD",
    "TERMINAL_TYPES",
    "AgentOutputProduced",
    "AgentStepStarted",
    "ApprovalDenied",
    "ApprovalEscalated",
    "ApprovalExpired",
    "ApprovalGranted",
    "ApprovalRequested",
    "CircuitStateChanged",
    "ContextSummarized",
    "EvalCaseCompleted",
    "EvalRunCompleted",
    "EvalRunStarted",
    "EvalScoreRecorded",
    "Event",
    "EventBase",
    "EventDecodeError",
    "FailureAction",
    "FailurePolicy",
    "FailurePolicyApplied",
    "GoalSubmitted",
    "HandoffAccepted",
    "HandoffRejected",
    "HandoffRequest",
    "InjectionSuspected",
    "LimitReached",
    "LlmAttemptFailed",
    "LlmCallCompleted",
    "LlmCallFailed",
    "LlmFallbackUsed",
    "LlmOutputModeLowered",
    "OutputRejected",
    "OutputsAggregated",
    "Plan",
    "PlanClamp",
    "PlanClamped",
    "PlanRejected",
    "PlannedSubtask",
    "RawValueReleased",
    "RecordedToolCall",
    "RunInterrupted",
    "RunningBranches",
    "SubtaskAssigned",
    "SubtaskCompleted",
    "SubtaskFailed",
    "SubtaskPlanRejected",
    "SubtaskPlanned",
    "SubtaskSkipped",
    "TaskCancelled",
    "TaskCompleted",
    "TaskFailed",
    "TaskForked",
    "TaskLeaseTakenOver",
    "TaskPlanned",
    "TokenUsage",
    "ToolCallCompleted",
    "ToolCallFailed",
    "ToolCallRejected",
    "ToolCallRequested",
    "ToolCallRetryScheduled",
    "ToolCallStarted",
    "UntrustedArgument",
    "Vote",
    "WorkflowRef",
    "decode",
    "encode",
    "new_event_id",
    "utc_now",
]
