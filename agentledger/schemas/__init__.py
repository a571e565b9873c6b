"""Events: the envelope, the catalog (one discriminated union), the codec and upcasters."""

from agentledger.schemas.catalog import EVENT_ADAPTER, EVENT_TYPES, TERMINAL_TYPES, Event
from agentledger.schemas.codec import EventDecodeError, decode, encode
from agentledger.schemas.envelope import EventBase, new_event_id, utc_now
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
from agentledger.schemas.limits import LimitReached
from agentledger.schemas.llm import LlmCallCompleted, LlmCallFailed, RecordedToolCall, TokenUsage
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
    "TERMINAL_TYPES",
    "AgentOutputProduced",
    "AgentStepStarted",
    "Event",
    "EventBase",
    "EventDecodeError",
    "GoalSubmitted",
    "InjectionSuspected",
    "LimitReached",
    "LlmCallCompleted",
    "LlmCallFailed",
    "OutputRejected",
    "Plan",
    "PlanRejected",
    "PlannedSubtask",
    "RecordedToolCall",
    "SubtaskAssigned",
    "SubtaskCompleted",
    "SubtaskFailed",
    "TaskCancelled",
    "TaskCompleted",
    "TaskFailed",
    "TaskPlanned",
    "TokenUsage",
    "ToolCallCompleted",
    "ToolCallFailed",
    "ToolCallRejected",
    "ToolCallRequested",
    "ToolCallStarted",
    "WorkflowRef",
    "decode",
    "encode",
    "new_event_id",
    "utc_now",
]
