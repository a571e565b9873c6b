"""Fork: a new task that starts from another task's history up to a seq, then runs live.

``fork_events`` copies the parent's events up to the fork point into the new task (new
event ids, causation ids mapped onto them, timestamps shifted so the copy ends now), then
adds ``task_forked``. Run the new task like any other (``EmbeddedRunner.run``): the
driver sees every copied event whose reaction was copied too as handled (its id is a
copied event's cause), so upstream results are reused as they are, and only reactions
after the fork point run again — with the fork's workflow, models and edited outputs.

The fork point is moved to a safe place:

* forward to the end of the reaction it falls in (a reaction's events are one batch; half
  a batch would mark its cause handled with part of its effect missing);
* back before any side-effecting tool call still running at that point (its start marker
  without its outcome would be reported as ``outcome_unknown`` in the fork).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import JsonValue

from agentledger.errors import UsageError
from agentledger.schemas import (
    TERMINAL_TYPES,
    AgentOutputProduced,
    Event,
    EventBase,
    GoalSubmitted,
    SubtaskAssigned,
    SubtaskCompleted,
    TaskForked,
    ToolCallStarted,
    WorkflowRef,
    new_event_id,
    utc_now,
)

_OUTCOMES = ("tool_call_completed", "tool_call_failed")


@dataclass(frozen=True)
class Fork:
    task_id: str
    fork_seq: int  # the last copied seq (after moving the requested one to a safe place)
    events: list[EventBase]  # the copied history and task_forked, ready to append


def safe_fork_seq(events: Sequence[Event], at: int) -> int:
    """``at`` moved to the end of its reaction, and back before running side effects."""
    by_seq = {e.seq: e for e in events}
    last = max(by_seq)
    if not 1 <= at <= last:
        raise UsageError(f"--at {at} is outside the task's history (seq 1 to {last})")
    at = _batch_end(by_seq, at)
    while True:
        settled = {
            getattr(e, "idempotency_key", None)
            for e in events
            if e.seq <= at and e.type in _OUTCOMES
        }
        running = [
            e
            for e in events
            if e.seq <= at and isinstance(e, ToolCallStarted) and e.idempotency_key not in settled
        ]
        if not running:
            return at
        at = _batch_start(by_seq, running[0].seq) - 1
        if at < 1:
            raise UsageError("there is no safe fork point before that seq")


def _batch_end(by_seq: Mapping[int, Event], seq: int) -> int:
    cause = by_seq[seq].causation_id
    while cause is not None and seq + 1 in by_seq and by_seq[seq + 1].causation_id == cause:
        seq += 1
    return seq


def _batch_start(by_seq: Mapping[int, Event], seq: int) -> int:
    cause = by_seq[seq].causation_id
    while cause is not None and seq - 1 in by_seq and by_seq[seq - 1].causation_id == cause:
        seq -= 1
    return seq


def fork_events(
    parent: Sequence[Event],
    at: int,
    *,
    task_id: str | None = None,
    workflow: WorkflowRef | None = None,
    model_overrides: Mapping[str, str] | None = None,
    edits: Mapping[str, JsonValue] | None = None,
) -> Fork:
    """The events of a fork of ``parent`` at ``at`` (see the module docstring).

    ``edits`` gives subtasks a new output: each must have completed by the fork point, and
    its output must not have been handed to another subtask yet (fork earlier if it was).
    """
    events = sorted(parent, key=lambda e: e.seq)
    if not events or not isinstance(events[0], GoalSubmitted):
        raise UsageError("the task has no goal_submitted event at seq 1; it cannot be forked")
    parent_id = events[0].task_id
    at = safe_fork_seq(events, at)
    prefix = [e for e in events if e.seq <= at]
    ended = next((e for e in prefix if e.type in TERMINAL_TYPES), None)
    if ended is not None:
        raise UsageError(
            f"task {parent_id} ended at seq {ended.seq} ({ended.type}); fork before that seq"
        )
    edits = dict(edits or {})
    _check_edits(prefix, edits)
    new_id = task_id or new_event_id()
    ids = {e.event_id: new_event_id() for e in prefix}
    shift = utc_now() - prefix[-1].occurred_at
    copied: list[EventBase] = []
    for e in prefix:
        update: dict[str, object] = {
            "task_id": new_id,
            "event_id": ids[e.event_id],
            "causation_id": ids.get(e.causation_id, e.causation_id) if e.causation_id else None,
            "correlation_id": new_id,
            "occurred_at": e.occurred_at + shift,
        }
        if isinstance(e, GoalSubmitted) and workflow is not None:
            update["workflow"] = workflow
        if isinstance(e, SubtaskCompleted | AgentOutputProduced) and e.subtask_id in edits:
            update["output"] = edits[e.subtask_id]
        copied.append(e.model_copy(update=update))
    forked = TaskForked(
        task_id=new_id,
        seq=at + 1,
        correlation_id=new_id,
        parent_task_id=parent_id,
        fork_seq=at,
        copied_events=len(copied),
        workflow_path=workflow.path if workflow is not None else None,
        model_overrides=dict(model_overrides or {}),
        edited_outputs=sorted(edits),
    )
    return Fork(new_id, at, [*copied, forked])


def _check_edits(prefix: Sequence[Event], edits: Mapping[str, JsonValue]) -> None:
    for subtask in edits:
        done = [e for e in prefix if isinstance(e, SubtaskCompleted) and e.subtask_id == subtask]
        if not done:
            raise UsageError(
                f"subtask {subtask!r} has not completed by the fork point; fork after its "
                "subtask_completed to edit its output"
            )
        handed = [
            e for e in prefix if isinstance(e, SubtaskAssigned) and subtask in (e.inputs or {})
        ]
        if handed:
            raise UsageError(
                f"subtask {subtask!r}'s output was already handed to {handed[0].subtask_id!r} "
                f"at seq {handed[0].seq}; fork before that seq to edit it"
            )


def lineage(events: Sequence[Event]) -> TaskForked | None:
    """The fork record of a task, if it is a fork: the last one, since a fork of a fork
    also holds the parent's ``task_forked`` among the events it copied."""
    return next((e for e in reversed(events) if isinstance(e, TaskForked)), None)


def model_overrides(events: Sequence[Event]) -> dict[str, str]:
    """The models a task runs with, over its workflow's: every fork generation's overrides,
    the later ones winning (a fork of a fork runs with its parent's too)."""
    out: dict[str, str] = {}
    for e in events:
        if isinstance(e, TaskForked):
            out |= e.model_overrides
    return out


def lineage_line(events: Sequence[Event]) -> str | None:
    """One line for ``status``: where a fork came from."""
    f = lineage(events)
    if f is None:
        return None
    changes = [f"workflow {f.workflow_path}"] if f.workflow_path else []
    changes += [f"model {k}={v}" for k, v in f.model_overrides.items()]
    changes += [f"edited output of {s}" for s in f.edited_outputs]
    tail = f"; {', '.join(changes)}" if changes else ""
    return f"forked from task {f.parent_task_id} at seq {f.fork_seq}{tail}"
