"""Pure mapping of one event to one audit-table row.

No ClickHouse here: ``to_row(event, workflow=...)`` turns any event of the catalog into the
typed columns analytics need, plus the masked event as JSON text. The column list below is
the order of ``schema.sql`` and of every insert.

A task's events after its ``GoalSubmitted`` do not carry the workflow name, so the caller
supplies it (``workflow_of`` reads it from the goal); the projection keeps the map.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from agentledger.redaction import redact
from agentledger.schemas import (
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    CircuitStateChanged,
    ContextSummarized,
    EventBase,
    GoalSubmitted,
    InjectionSuspected,
    LimitReached,
    LlmAttemptFailed,
    LlmCallCompleted,
    LlmCallFailed,
    LlmFallbackUsed,
    LlmOutputModeLowered,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    ToolCallRetryScheduled,
    ToolCallStarted,
)
from agentledger.schemas.codec import to_dict

__all__ = [
    "AUDIT_COLUMNS",
    "CORRUPT_TYPE",
    "FAILURE_STATUSES",
    "OUTCOME_STATUSES",
    "AuditRow",
    "corrupt_row",
    "status_of",
    "to_row",
    "workflow_of",
]

AUDIT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "task_id",
    "seq",
    "type",
    "agent",
    "workflow",
    "subtask_id",
    "model",
    "provider",
    "tool",
    "status",
    "error_kind",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms",
    "occurred_at",
    "causation_id",
    "correlation_id",
    "payload",
)
"""Columns written by every insert, in order (``ingested_at`` is filled by ClickHouse)."""

CORRUPT_TYPE = "corrupt_record"
"""The ``type`` of a row standing for stored bytes that did not decode into an event."""

# Status of each event type that ends something: a call, a subtask, a task. Events that
# only start or request something have status "".
_STATUS: dict[str, str] = {
    "llm_call_completed": "ok",
    "llm_call_failed": "error",
    "llm_attempt_failed": "error",  # a failed attempt, even one a retry recovered from
    "tool_call_completed": "ok",
    "tool_call_failed": "error",
    "tool_call_rejected": "rejected",
    "subtask_completed": "ok",
    "subtask_failed": "error",
    "output_rejected": "rejected",
    "plan_rejected": "rejected",
    "handoff_rejected": "rejected",
    "subtask_plan_rejected": "rejected",
    "task_completed": "ok",
    "task_failed": "error",
    "task_cancelled": "cancelled",
    "approval_denied": "rejected",  # the only outcome a denied tool call gets
    "injection_suspected": "warning",
}

OUTCOME_STATUSES = ("ok", "error", "rejected")
"""Statuses of outcome rows: the denominator of failure rates."""

FAILURE_STATUSES = ("error", "rejected")
"""Statuses that count as a failure."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of the audit table. Strings are "" and numbers 0 where a field does not apply."""

    event_id: str
    task_id: str
    seq: int
    type: str
    agent: str
    workflow: str
    subtask_id: str
    model: str
    provider: str
    tool: str
    status: str
    error_kind: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    latency_ms: float
    occurred_at: datetime
    causation_id: str
    correlation_id: str
    payload: str

    def values(self) -> tuple[Any, ...]:
        """The row's values in ``AUDIT_COLUMNS`` order, ready for an insert."""
        return astuple(self)


def status_of(event: EventBase) -> str:
    """The row status: ok, error, rejected, cancelled, warning/stop (limits), or ""."""
    if isinstance(event, LimitReached):
        return event.severity
    return _STATUS.get(type(event).model_fields["type"].default, "")


def workflow_of(event: EventBase) -> str | None:
    """The workflow name when ``event`` is the goal that starts a task, else None."""
    return event.workflow.name if isinstance(event, GoalSubmitted) else None


def _error_kind(event: EventBase, event_type: str) -> str:
    kind = getattr(event, "error_kind", None)
    if isinstance(kind, str):
        return kind
    if isinstance(event, LimitReached):
        return f"limit:{event.limit}"
    if isinstance(event, InjectionSuspected):
        return f"injection_{event.action}"
    if event_type in (
        "output_rejected",
        "plan_rejected",
        "subtask_plan_rejected",
        "approval_denied",
    ):
        return event_type
    return ""


def to_row(event: EventBase, *, workflow: str = "") -> AuditRow:
    """The audit row of ``event``. ``workflow`` is the task's workflow name, if known."""
    event_type: str = type(event).model_fields["type"].default
    model = provider = tool = ""
    input_tokens = output_tokens = cached_tokens = 0
    cost = latency = 0.0
    if isinstance(event, LlmCallCompleted):
        model, provider = event.model, event.provider
        input_tokens = event.usage.input_tokens
        output_tokens = event.usage.output_tokens
        cached_tokens = event.usage.cached_tokens
        cost, latency = event.cost_usd, event.latency_ms
    elif isinstance(event, ContextSummarized):  # the summary call counts like any LLM call
        model, provider = event.model or "", event.provider or ""
        input_tokens = event.usage.input_tokens
        output_tokens = event.usage.output_tokens
        cached_tokens = event.usage.cached_tokens
        cost, latency = event.cost_usd, event.latency_ms
    elif isinstance(event, LlmCallFailed):
        model, provider, latency = event.model, event.provider, event.latency_ms
    elif isinstance(event, LlmAttemptFailed | LlmOutputModeLowered):
        model, provider = event.model, event.provider
    elif isinstance(event, LlmFallbackUsed):
        model, provider = event.from_model, event.provider
    elif isinstance(event, ToolCallCompleted | ToolCallFailed):
        tool, latency = event.tool, event.latency_ms
    elif isinstance(
        event,
        ToolCallRequested
        | ToolCallStarted
        | ToolCallRejected
        | ApprovalRequested
        | ApprovalGranted
        | ApprovalDenied
        | ApprovalExpired
        | ApprovalEscalated
        | ToolCallRetryScheduled,
    ):
        tool = event.tool
    elif isinstance(event, CircuitStateChanged) and event.scope == "tool":
        tool = event.name
    elif isinstance(event, InjectionSuspected) and event.source.startswith("tool:"):
        tool = event.source.removeprefix("tool:").partition("#")[0]
    if isinstance(event, GoalSubmitted):
        workflow = event.workflow.name
    subtask_id = getattr(event, "subtask_id", None)
    return AuditRow(
        event_id=event.event_id,
        task_id=event.task_id,
        seq=event.seq,
        type=event_type,
        agent=event.agent or "",
        workflow=workflow,
        subtask_id=subtask_id if isinstance(subtask_id, str) else "",
        model=model,
        provider=provider,
        tool=tool,
        status=status_of(event),
        error_kind=_error_kind(event, event_type),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        cost_usd=cost,
        latency_ms=latency,
        occurred_at=event.occurred_at.astimezone(UTC),
        causation_id=event.causation_id or "",
        correlation_id=event.correlation_id or "",
        payload=orjson.dumps(redact(to_dict(event))).decode(),
    )


def _stored_time(data: bytes) -> datetime | None:
    try:
        raw = orjson.loads(data)
        value = datetime.fromisoformat(raw["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def corrupt_row(
    offset: int, task_id: str, seq: int | None, reason: str, data: bytes, *, fallback: datetime
) -> AuditRow:
    """A row standing for stored bytes that are not a valid event, so the audit table shows
    the gap instead of hiding it.

    Its id comes from the log offset and its time from the bytes when they still hold one
    (else ``fallback``, e.g. the time of the event before it), so replaying the same record
    replaces the row instead of adding another.
    """
    payload = orjson.dumps({"offset": offset, "reason": redact(reason)}).decode()
    return AuditRow(
        event_id=f"corrupt:{task_id}:{offset}",
        task_id=task_id,
        seq=seq or 0,
        type=CORRUPT_TYPE,
        agent="",
        workflow="",
        subtask_id="",
        model="",
        provider="",
        tool="",
        status="corrupt",
        error_kind="corrupt_event",
        input_tokens=0,
        output_tokens=0,
        cached_tokens=0,
        cost_usd=0.0,
        latency_ms=0.0,
        occurred_at=_stored_time(data) or fallback,
        causation_id="",
        correlation_id="",
        payload=payload,
    )
