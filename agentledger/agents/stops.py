"""Stops: a limit that ends a subtask or a task is two events, the limit and the failure.

Every guard rail that stops work records the numbers (``limit_reached``: what, value,
threshold) and then the failure that the orchestrator and people act on. Built in one
place so each stop reads the same in the log.
"""

from __future__ import annotations

from typing import Any, Literal

from agentledger.schemas import EventBase, LimitReached, SubtaskFailed, TaskFailed


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
