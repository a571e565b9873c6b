"""Verify: re-run today's processors over a recorded task and check they cause the same.

For every recorded event a processor reacts to, in log order, the verifier folds the
recorded history up to that event (the state the live driver had), runs the current
processor on it with model and tool calls answered from the recording (see recording.py),
masks the outputs as the write path does, and compares them with the events the recording
says that event caused: types, routes, arguments and outputs, not ids or timestamps. The
first reaction that differs is the divergence, reported with both sides. Like Temporal's
replayer, it tells before a deploy whether tasks in flight would resume the same way.

    result = await verify_events(events, runtime)
    if not result.ok:
        print(result.divergence.describe())

Deterministic models (the scripted ones) can be asked again instead (``rerun_models``), so
a change to a scripted model is caught too; tools are always answered from the recording.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agentledger.agents.approvals import EXTERNAL_DECISIONS
from agentledger.agents.breakers import Breakers
from agentledger.agents.context import Processor, ProcessorContext, Runtime
from agentledger.evaluation.compare import FieldDifference, differences, essence
from agentledger.evaluation.recording import Recording, recorded_models, recorded_tools
from agentledger.projections.task_state import TaskState, evolve
from agentledger.schemas import TERMINAL_TYPES, Event, EventBase, TaskForked, utc_now
from agentledger.security.guard import protect
from agentledger.streams.driver import default_processors, processor_routes, react

# Appended from outside the processors (a person, the runner's clock): not a reaction.
_NOT_REACTIONS = EXTERNAL_DECISIONS | {"approval_expired"}


@dataclass(frozen=True)
class Divergence:
    """The first reaction that differs: the recorded cause, and both sides at that point."""

    task_id: str
    cause: Event
    index: int  # position in the cause's reaction
    recorded: EventBase | None
    replayed: EventBase | None
    fields: list[FieldDifference] = field(default_factory=list)

    def describe(self) -> str:
        c = self.cause
        head = (
            f"task {self.task_id}: the reaction to seq {c.seq} {c.type}"
            f"{_about(c)} differs at its event #{self.index + 1}"
        )
        rec = self.recorded
        new = self.replayed
        lines = [head]
        lines.append(
            "  recorded: "
            + (f"seq {rec.seq} {rec.event_type}{_about(rec)}" if rec else "(nothing)")
        )
        lines.append("  now:      " + (f"{new.event_type}{_about(new)}" if new else "(nothing)"))
        if rec is not None and new is not None and rec.event_type == new.event_type:
            lines += [f"    {d}" for d in self.fields[:12]]
            if any(d.path == "request_digest" for d in self.fields):
                lines.append(
                    "    (the request to the model differs: its instructions, tools, output "
                    "contract or the context built from earlier events changed)"
                )
            if len(self.fields) > 12:
                lines.append(f"    … and {len(self.fields) - 12} more fields")
        return "\n".join(lines)


def _about(e: EventBase) -> str:
    parts = [f"{k}={getattr(e, k)}" for k in ("agent", "subtask_id", "tool") if getattr(e, k, None)]
    return f" ({', '.join(parts)})" if parts else ""


@dataclass(frozen=True)
class Verification:
    task_id: str
    reactions: int  # reactions re-run
    events_checked: int  # recorded events matched by a re-run reaction
    unchecked: int  # reactions with no recorded output: cut short by the end, or still to come
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def describe(self) -> str:
        if self.divergence is not None:
            return self.divergence.describe()
        extra = (
            f", {self.unchecked} with no recorded output (cut short by the task's end, or "
            "not run yet)"
            if self.unchecked
            else ""
        )
        return (
            f"task {self.task_id}: ok — {self.reactions} reactions re-run, "
            f"{self.events_checked} events the same{extra}"
        )


def replay_runtime(runtime: Runtime, recording: Recording, *, rerun_models: bool) -> Runtime:
    """``runtime`` answering from ``recording``: tools always, models unless re-run."""
    return dataclasses.replace(
        runtime,
        workflow=recorded_tools(runtime.workflow, recording),
        models=runtime.models if rerun_models else recorded_models(runtime.workflow, recording),
        breakers=Breakers(),  # the recorded run's breakers started closed too
    )


async def verify_events(
    events: Sequence[Event],
    runtime: Runtime,
    *,
    rerun_models: bool = False,
    processors: Iterable[Processor] | None = None,
) -> Verification:
    """Re-run every recorded reaction of one task (see the module docstring)."""
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        raise ValueError("no events to verify")
    task_id = ordered[0].task_id
    recording = Recording(ordered)
    if runtime.workflow.mcp is not None:  # offer MCP tools as the task had them pinned
        runtime.workflow.mcp.adopt(ordered)
    replay = replay_runtime(runtime, recording, rerun_models=rerun_models)
    routes = processor_routes(processors if processors is not None else default_processors())
    finished = next((e for e in ordered if e.type in TERMINAL_TYPES), None)
    ended_badly = finished.seq if finished is not None and finished.type != "task_completed" else 0
    forked = next((e for e in reversed(ordered) if isinstance(e, TaskForked)), None)  # its own
    copied_until = forked.fork_seq if forked is not None else 0  # a fork's parent's part
    state = TaskState(task_id=task_id)
    timed = runtime.workflow.limits.max_wall_time_s is not None
    reactions = checked = unchecked = 0
    for event in ordered:
        state = evolve(state, event)
        processor = routes.get(event.type)
        if processor is None:
            continue
        recorded = [e for e in recording.children(event.event_id) if e.type not in _NOT_REACTIONS]
        if recorded and all(e.seq <= copied_until for e in recorded):
            continue  # copied from the parent (maybe edited on purpose): the parent's to verify
        recording.cause = event
        ctx = ProcessorContext(
            _as_of(state, event.occurred_at) if timed else state,
            replay,
            recovering=any(getattr(e, "error_kind", None) == "outcome_unknown" for e in recorded),
        )
        replayed = protect(await react(processor, event, ctx), replay)
        reactions += 1
        if not recorded and replayed and (finished is None or ended_badly > event.seq):
            # The task failed while this reaction ran (its output was dropped), or it has
            # not finished and the reaction is still to come: nothing recorded to compare.
            unchecked += 1
            continue
        divergence = _compare(task_id, event, recorded, replayed)
        if divergence is not None:
            return Verification(task_id, reactions, checked, unchecked, divergence)
        checked += len(recorded)
    return Verification(task_id, reactions, checked, unchecked)


def _as_of(state: TaskState, handled_at: datetime) -> TaskState:
    """The state with its start moved so that "time since the task started" is what it
    was when the event was handled (the wall-time budget is checked against the clock)."""
    if state.started_at is None:
        return state
    return dataclasses.replace(state, started_at=utc_now() - (handled_at - state.started_at))


def _compare(
    task_id: str, cause: Event, recorded: list[Event], replayed: list[EventBase]
) -> Divergence | None:
    for i in range(max(len(recorded), len(replayed))):
        rec = recorded[i] if i < len(recorded) else None
        new = replayed[i] if i < len(replayed) else None
        if rec is None or new is None or rec.type != new.event_type:
            return Divergence(task_id, cause, i, rec, new)
        ours, theirs = essence(rec), essence(new)
        if ours != theirs:  # the common case is equality: walk the fields only to explain
            return Divergence(task_id, cause, i, rec, new, differences(ours, theirs))
    return None
