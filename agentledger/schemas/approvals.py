"""Approval events: a risky tool call waits for a person, who grants or denies it.

``approval_requested`` pauses one tool call (and so its subtask). The decision comes from
outside the task (``agentledger approve`` / ``deny``) and names the request as its cause,
so the request counts as handled. A deadline that passes is recorded as
``approval_expired``; the timeout policy then denies the call or escalates it once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, JsonValue

from agentledger.schemas.envelope import EventBase

OnTimeout = Literal["deny", "escalate"]


class ApprovalRequested(EventBase):
    """A tool call at or above the approval risk level waits for a decision."""

    type: Literal["approval_requested"] = "approval_requested"
    approval_id: str = Field(min_length=1, max_length=32)
    subtask_id: str
    call_id: str
    tool: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    idempotency_key: str
    risk: str
    expires_at: AwareDatetime
    on_timeout: OnTimeout = "deny"
    escalate_to: str | None = None
    escalation_timeout_s: float | None = None


class ApprovalGranted(EventBase):
    type: Literal["approval_granted"] = "approval_granted"
    approval_id: str
    subtask_id: str
    tool: str
    approved_by: str
    note: str | None = None


class ApprovalDenied(EventBase):
    type: Literal["approval_denied"] = "approval_denied"
    approval_id: str
    subtask_id: str
    tool: str
    denied_by: str
    reason: str


class ApprovalExpired(EventBase):
    """Nobody decided before ``deadline``; the timeout policy reacts to this."""

    type: Literal["approval_expired"] = "approval_expired"
    approval_id: str
    subtask_id: str
    tool: str
    deadline: AwareDatetime
    escalations: int = 0  # how many times it had been escalated when it expired


class ApprovalEscalated(EventBase):
    type: Literal["approval_escalated"] = "approval_escalated"
    approval_id: str
    subtask_id: str
    tool: str
    escalate_to: str
    expires_at: AwareDatetime
