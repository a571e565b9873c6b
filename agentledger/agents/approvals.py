"""Approval decisions: what a grant, a denial or an expiry does to the paused tool call.

* ``approval_granted`` runs the call exactly as if it had needed no approval (durable start
  marker for side effects, idempotency ledger, outcome events), caused by the grant.
* ``approval_denied`` fails the subtask (``error_kind: approval_denied``, with the reason).
* ``approval_expired`` applies the timeout policy recorded in the request: escalate once
  (``approval_escalated``, a new deadline) or deny.

Each reaction is edge-triggered: it acts only when *its* event is the one that decided the
approval in the fold, so a duplicate decision in the log does nothing.

Expiries are observed, not scheduled: ``expired_approvals`` lists the deadlines that have
passed, and whoever drives the task (the embedded runner, the CLI, a Kafka worker's timer)
appends them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agentledger.agents.context import ProcessorContext
from agentledger.agents.tool_executor import ToolExecutor
from agentledger.errors import UsageError
from agentledger.projections.approvals import ApprovalState
from agentledger.projections.task_state import TaskState
from agentledger.schemas import (
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    Event,
    EventBase,
    SubtaskFailed,
    utc_now,
)

EXTERNAL_DECISIONS = frozenset({"approval_granted", "approval_denied"})
"""Event types appended to a task from outside its runner (by ``agentledger approve``).

On Kafka they are the only events another process may append unstamped (seq 0): the
task's worker stamps them (see ``streams/kafka_runner.py``)."""

TIMEOUT_DECIDER = "timeout-policy"
"""``denied_by`` of a denial made by the timeout policy, not by a person."""


class ApprovalGate:
    handles = frozenset({"approval_granted", "approval_denied", "approval_expired"})

    def __init__(self, executor: ToolExecutor | None = None) -> None:
        self._executor = executor or ToolExecutor()

    async def handle(self, event: Event, ctx: ProcessorContext) -> list[EventBase]:
        state = ctx.state
        if state.terminal:
            return []
        approval = state.approvals.get(getattr(event, "approval_id", ""))
        if approval is None or approval.decision_event_id != event.event_id:
            return []  # unknown, or not the event that decided it (a duplicate)
        sub = state.subtasks.get(approval.subtask_id)
        if sub is None or sub.status != "running":
            return []  # the subtask ended meanwhile (e.g. another call of its step was denied)
        match event:
            case ApprovalGranted():
                request = state.tool_requests.get(approval.idempotency_key)
                if request is None:
                    return []
                return await self._executor.proceed(request, event, ctx)
            case ApprovalDenied():
                return [
                    SubtaskFailed.caused_by(
                        event,
                        agent=approval.agent,
                        subtask_id=approval.subtask_id,
                        reason=f"call of {approval.tool!r} ({approval.id}) denied by "
                        f"{event.denied_by}: {event.reason}",
                        error_kind="approval_denied",
                    )
                ]
            case ApprovalExpired():
                return [_timeout_policy(event, approval)]
        return []


def _timeout_policy(event: ApprovalExpired, approval: ApprovalState) -> EventBase:
    if approval.on_timeout == "escalate" and approval.escalations == 0 and approval.escalate_to:
        return ApprovalEscalated.caused_by(
            event,
            approval_id=approval.id,
            subtask_id=approval.subtask_id,
            tool=approval.tool,
            escalate_to=approval.escalate_to,
            expires_at=event.occurred_at  # from when the expiry was seen: a full window
            + timedelta(
                seconds=approval.escalation_timeout_s
                or (approval.expires_at - approval.requested_at).total_seconds()
            ),
        )
    waited = (event.deadline - approval.requested_at).total_seconds()
    escalated = f", after escalation to {approval.escalate_to}" if approval.escalations else ""
    return ApprovalDenied.caused_by(
        event,
        approval_id=approval.id,
        subtask_id=approval.subtask_id,
        tool=approval.tool,
        denied_by=TIMEOUT_DECIDER,
        reason=f"no decision within {waited:g}s (expired at "
        f"{event.deadline:%Y-%m-%d %H:%M:%S} UTC{escalated})",
    )


def expired_approvals(state: TaskState, now: datetime | None = None) -> list[EventBase]:
    """``approval_expired`` for every pending approval whose deadline has passed."""
    if state.terminal:
        return []
    now = now or utc_now()
    return [
        ApprovalExpired(
            task_id=state.task_id,
            causation_id=a.deadline_event_id,
            correlation_id=a.correlation_id,
            agent=a.agent,
            occurred_at=now,
            approval_id=a.id,
            subtask_id=a.subtask_id,
            tool=a.tool,
            deadline=a.expires_at,
            escalations=a.escalations,
        )
        for a in state.pending_approvals
        if a.expires_at <= now
    ]


def decision(
    state: TaskState,
    approval_id: str,
    *,
    granted: bool,
    by: str,
    text: str | None,
    now: datetime | None = None,
) -> ApprovalGranted | ApprovalDenied:
    """A person's decision on a pending approval, ready to append to the task's log.

    Raises UsageError for an unknown approval, one already decided, or one whose deadline
    has passed (the timeout policy decides that one when the task is next driven).
    """
    approval = state.approvals.get(approval_id)
    if approval is None:
        raise UsageError(f"task {state.task_id} has no approval {approval_id!r}")
    if approval.status in ("granted", "denied"):
        raise UsageError(
            f"approval {approval_id} was already {approval.status} by {approval.decided_by}"
            + (f" at {approval.decided_at:%Y-%m-%d %H:%M:%S} UTC" if approval.decided_at else "")
            + "; a decision cannot be changed"
        )
    if state.terminal:
        raise UsageError(f"task {state.task_id} already {state.status}; nothing to decide")
    now = now or utc_now()
    if approval.status == "expired" or approval.expires_at <= now:
        raise UsageError(
            f"approval {approval_id} expired at {approval.expires_at:%Y-%m-%d %H:%M:%S} UTC; "
            f"its timeout policy ({approval.on_timeout}) applies when the task is next driven "
            f"(`agentledger resume {state.task_id}`; on Kafka its worker does it)"
        )
    common = {
        "task_id": state.task_id,
        "causation_id": approval.request_event_id,
        "correlation_id": approval.correlation_id,
        "agent": approval.agent,
        "approval_id": approval.id,
        "subtask_id": approval.subtask_id,
        "tool": approval.tool,
    }
    if granted:
        return ApprovalGranted(**common, approved_by=by, note=text)
    if not text:
        raise UsageError("a denial needs a reason (--reason)")
    return ApprovalDenied(**common, denied_by=by, reason=text)
