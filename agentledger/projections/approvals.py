"""Approvals as the log says they are: part of ``TaskState``, folded purely.

An approval is ``pending`` until a person grants or denies it, or its deadline passes
(``expired``, until the timeout policy escalates it back to ``pending`` or denies it).
Only the first decision counts: a second or late decision event in the log is ignored
here, so it can never change what happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import JsonValue

from agentledger.schemas import (
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
)

if TYPE_CHECKING:
    from agentledger.projections.task_state import TaskState

ApprovalStatus = Literal["pending", "expired", "granted", "denied"]
ApprovalEvent = (
    ApprovalRequested | ApprovalGranted | ApprovalDenied | ApprovalExpired | ApprovalEscalated
)


@dataclass(frozen=True, slots=True)
class ApprovalState:
    id: str
    subtask_id: str
    agent: str
    call_id: str
    tool: str
    arguments: Mapping[str, JsonValue]
    idempotency_key: str
    risk: str
    requested_at: datetime
    expires_at: datetime
    on_timeout: str
    escalate_to: str | None
    escalation_timeout_s: float | None
    request_event_id: str  # decisions name it as their cause
    deadline_event_id: str  # the event that set the current deadline (request or escalation)
    correlation_id: str | None
    status: ApprovalStatus = "pending"
    escalations: int = 0
    decided_by: str | None = None
    decision_text: str | None = None  # the approver's note or the denial's reason
    decided_at: datetime | None = None
    decision_event_id: str | None = None  # the event that granted, denied or expired it

    def as_row(self, task_id: str) -> dict[str, JsonValue]:
        """The approval as one JSON row, as ``approvals --json`` and the console list it."""
        return {
            "approval_id": self.id,
            "task_id": task_id,
            "subtask_id": self.subtask_id,
            "agent": self.agent,
            "tool": self.tool,
            "arguments": dict(self.arguments),
            "risk": self.risk,
            "requested_at": self.requested_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "escalated_to": self.escalate_to if self.escalations else None,
        }


def fold_approval(state: TaskState, event: ApprovalEvent) -> TaskState:
    """``state`` with ``event`` applied to its approvals."""
    current = state.approvals.get(event.approval_id)
    match event:
        case ApprovalRequested() if current is None:
            return _put(
                state,
                ApprovalState(
                    id=event.approval_id,
                    subtask_id=event.subtask_id,
                    agent=event.agent or "",
                    call_id=event.call_id,
                    tool=event.tool,
                    arguments=event.arguments,
                    idempotency_key=event.idempotency_key,
                    risk=event.risk,
                    requested_at=event.occurred_at,
                    expires_at=event.expires_at,
                    on_timeout=event.on_timeout,
                    escalate_to=event.escalate_to,
                    escalation_timeout_s=event.escalation_timeout_s,
                    request_event_id=event.event_id,
                    deadline_event_id=event.event_id,
                    correlation_id=event.correlation_id,
                ),
            )
        case ApprovalGranted() if current is not None and current.status == "pending":
            return _put(state, _decided(current, event, "granted", event.approved_by, event.note))
        case ApprovalDenied() if current is not None and current.status in ("pending", "expired"):
            state = replace(
                state,
                tool_requests={
                    k: v for k, v in state.tool_requests.items() if k != current.idempotency_key
                },
            )
            return _put(state, _decided(current, event, "denied", event.denied_by, event.reason))
        case ApprovalExpired() if (
            current is not None
            and current.status == "pending"
            and current.escalations == event.escalations
        ):
            return _put(state, replace(current, status="expired", decision_event_id=event.event_id))
        case ApprovalEscalated() if current is not None and current.status == "expired":
            return _put(
                state,
                replace(
                    current,
                    status="pending",
                    escalations=current.escalations + 1,
                    expires_at=event.expires_at,
                    deadline_event_id=event.event_id,
                    decision_event_id=None,
                ),
            )
    return state


def _decided(
    current: ApprovalState,
    event: ApprovalGranted | ApprovalDenied,
    status: ApprovalStatus,
    by: str,
    text: str | None,
) -> ApprovalState:
    return replace(
        current,
        status=status,
        decided_by=by,
        decision_text=text,
        decided_at=event.occurred_at,
        decision_event_id=event.event_id,
    )


def _put(state: TaskState, approval: ApprovalState) -> TaskState:
    return replace(state, approvals={**state.approvals, approval.id: approval})
