"""Stops: a limit that ends a subtask or a task is two events, the limit and the failure.

Every guard rail that stops work records the numbers (``limit_reached``: what, value,
threshold) and then the failure that the orchestrator and people act on. Built in one
place so each stop reads the same in the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from agentledger.schemas import EventBase, LimitReached, SubtaskFailed, TaskFailed, ToolCallRejected

if TYPE_CHECKING:
    from agentledger.agents.workflow import AgentSpec
    from agentledger.projections.task_state import SubtaskState


def _limit(
    cause: EventBase,
    extra: dict[str, Any],
    *,
    limit: str,
    scope: str,
    value: float,
    threshold: float,
    subtask_id: str | None,
    detail: str,
) -> LimitReached:
    return LimitReached.caused_by(
        cause,
        limit=limit,
        scope=scope,
        severity="stop",
        value=value,
        threshold=threshold,
        subtask_id=subtask_id,
        detail=detail,
        **extra,
    )


def stop(
    level: Literal["subtask", "task"],
    cause: EventBase,
    *,
    limit: str,
    scope: str,
    value: float,
    threshold: float,
    subtask_id: str,
    detail: str,
    reason: str,
    error_kind: str,
    agent: str | None = None,
) -> list[EventBase]:
    """``limit_reached`` (severity stop) and then ``subtask_failed`` or ``task_failed``."""
    extra: dict[str, Any] = {} if agent is None else {"agent": agent}
    reached = _limit(
        cause,
        extra,
        limit=limit,
        scope=scope,
        value=value,
        threshold=threshold,
        subtask_id=subtask_id,
        detail=detail,
    )
    if level == "subtask":
        failed: EventBase = SubtaskFailed.caused_by(
            cause, subtask_id=subtask_id, reason=reason, error_kind=error_kind, **extra
        )
    else:
        failed = TaskFailed.caused_by(
            cause, reason=reason, error_kind=error_kind, subtask_id=subtask_id, **extra
        )
    return [reached, failed]


def rejection_stop(
    cause: EventBase, spec: AgentSpec, sub: SubtaskState, outcomes: Sequence[EventBase]
) -> list[EventBase]:
    """Stop the subtask when its refused calls go over ``max_rejected_calls``.

    The stop comes first in the batch, so the refusals recorded after it cannot start
    another step."""
    rejected = [o for o in outcomes if isinstance(o, ToolCallRejected)]
    total = sub.rejected_calls + len(rejected)
    if not rejected or total <= spec.max_rejected_calls:
        return []
    last = rejected[-1]
    stopped = stop(
        "subtask",
        cause,
        limit="rejected_tool_calls",
        scope="agent",
        value=total,
        threshold=spec.max_rejected_calls,
        subtask_id=sub.id,
        detail=f"last refused: {last.tool} ({last.error_kind})",
        reason=f"{spec.name} had {total} tool calls refused, over the limit of "
        f"{spec.max_rejected_calls}; the last: {last.tool} ({last.error_kind}): "
        f"{last.reason[:300]}",
        error_kind="too_many_rejected_calls",
    )
    return [*stopped, *rejected]
