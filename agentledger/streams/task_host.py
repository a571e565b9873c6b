"""TaskHost: one task's lifecycle, the same under both runners.

A runner hosts each task it drives in a ``TaskHost``, which holds the ``TaskDriver`` and
the bookkeeping around it; the runner keeps only its transport (the embedded runner its
lease, heartbeat and signal drain; the Kafka worker its records, acknowledgements,
rebalances and dead letters). The lifecycle::

    history = History.of(await log.read_task(task_id))   # corrupt records set apart
    problem = history.problem(task_id, workflow, ...)     # a goal, of this workflow?
    host = TaskHost(runtime, task_id, append)             # append: the log's, transport-side
    host.load(history.events)
    await host.start_tools(history.events)                # MCP pins before any dispatch
    for event in history.events:
        host.dispatch(event)                              # skips what it dispatched already
    ...
    host.arrival(event)                                   # read back from a shared log: what is it?
    decisions = host.take_in(read_after)                  # a person's decisions, or None
    if due := host.expired(now):                          # approval deadlines that passed
        await host.driver.emit(due)

External decisions. A person's ``approval_granted``/``approval_denied`` is appended by
another process. It counts where it stands only at exactly the task's next free seq;
unstamped (seq 0) or anywhere else, the host's one writer appends it again at the next
seq, same event id (``stamp``), so a task keeps one writer and one order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from agentledger.agents.approvals import EXTERNAL_DECISIONS, expired_approvals
from agentledger.agents.context import Processor, Runtime
from agentledger.agents.workflow import Workflow
from agentledger.projections.task_state import TaskState
from agentledger.schemas import TERMINAL_TYPES, Event, EventBase, GoalSubmitted
from agentledger.streams.driver import Sink, TaskDriver
from agentledger.streams.log import CorruptRecord, LogEntry, Recorded

log = logging.getLogger(__name__)

Arrival = Literal["dispatched", "stamp", "taken", "gap", "next"]
"""What an event read from the log is to a host: ``dispatched`` already; another writer's
decision to ``stamp``; at a seq already ``taken`` (ignored); ahead of a ``gap`` (what lies
between is to be read first); or the ``next`` one, to dispatch."""


def finished(events: Iterable[EventBase]) -> bool:
    """Whether ``events`` hold a terminal event (the task ended)."""
    return any(e.event_type in TERMINAL_TYPES for e in events)


def workflow_mismatch(goal: GoalSubmitted, workflow: Workflow, *, runners: str) -> str | None:
    """Why ``goal`` cannot run on ``runners`` (which run ``workflow``); None if it can."""
    if goal.workflow.name != workflow.name:
        return (
            f"task {goal.task_id} runs workflow {goal.workflow.name!r}; {runners} run "
            f"{workflow.name!r}"
        )
    return None


@dataclass(frozen=True, slots=True)
class History:
    """A task's records as read from its log, in order, split by what can be done with them."""

    events: list[Event] = field(default_factory=list)
    """The stamped events (seq >= 1), what the task is rebuilt from."""
    unstamped: list[Event] = field(default_factory=list)
    """Events another process produced without a seq (decisions waiting for their stamp)."""
    corrupt: list[CorruptRecord] = field(default_factory=list)
    """Records that could not be decoded; the runner reports them (and decides whether the
    task may run without them)."""

    @classmethod
    def of(cls, entries: Iterable[LogEntry]) -> History:
        history = cls()
        for entry in entries:
            if isinstance(entry, Recorded):
                (history.events if entry.event.seq else history.unstamped).append(entry.event)
            else:
                history.corrupt.append(entry)
        return history

    @property
    def goal(self) -> GoalSubmitted | None:
        return next((e for e in self.events if isinstance(e, GoalSubmitted)), None)

    @property
    def finished(self) -> bool:
        return finished(self.events)

    def problem(
        self, task_id: str, workflow: Workflow, *, source: str, runners: str
    ) -> str | None:
        """Why the task cannot be hosted by ``runners`` (no goal in ``source``, or a goal of
        another workflow); None if it can. Another version of the same workflow is only
        warned about: the task runs on the version at hand."""
        goal = self.goal
        if goal is None:
            return (
                f"task {task_id} has no goal_submitted event in {source}; "
                "its events cannot be processed"
            )
        mismatch = workflow_mismatch(goal, workflow, runners=runners)
        if mismatch is not None:
            return mismatch
        if goal.workflow.digest and goal.workflow.digest != workflow.digest:
            log.warning("task %s was submitted for another version of %s", task_id, workflow.name)
        return None


class TaskHost:
    """One task's driver and the bookkeeping both runners need around it.

    ``append`` writes a batch to the log (the runner's transport); the host notes the ids
    it appends (``own``) until they are dispatched, so an event of its own read back is
    never mistaken for another writer's.
    """

    __slots__ = (
        "_append",
        "_log",
        "driver",
        "expiring",
        "last_seq",
        "own",
        "runtime",
        "seen",
        "stamping",
        "task_id",
    )

    def __init__(
        self,
        runtime: Runtime,
        task_id: str,
        append: Sink,
        *,
        processors: Iterable[Processor] | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.runtime = runtime
        self.task_id = task_id
        self._append = append
        self._log = logger
        self.driver = TaskDriver(runtime, task_id, self._sink, processors=processors)
        self.last_seq = 0  # the highest seq dispatched
        self.own: set[str] = set()  # ids of events this host appended, until dispatched
        self.seen: set[str] = set()  # ids of events dispatched
        self.stamping: set[str] = set()  # ids of other writers' decisions being stamped
        self.expiring: set[str] = set()  # deadlines (their events' ids) whose expiry is sent

    @property
    def state(self) -> TaskState:
        return self.driver.state

    @property
    def finished(self) -> bool:
        return self.driver.state.terminal

    @property
    def busy(self) -> bool:
        return self.driver.busy

    def load(self, history: Sequence[Event]) -> None:
        """Learn what the log holds before it is dispatched again (``driver.load``)."""
        self.driver.load(history)

    async def start_tools(self, history: Sequence[EventBase]) -> None:
        """The MCP tools the task sees: adopt the pins its history recorded, or (none
        recorded yet) pin the servers' tools now and append ``mcp_tools_pinned`` before
        any event of the task is dispatched. Raises ``EventLogError`` (the append)."""
        workflow = self.runtime.workflow
        mcp = workflow.mcp
        if mcp is None:
            return
        if finished(history):
            mcp.adopt(history)  # an ended task: nothing will call a tool
            return
        pins = await mcp.start_task(workflow.mcp_tools, history)
        if pins:
            await self.driver.emit(pins)

    def dispatch(
        self,
        event: Event,
        *,
        consumed: bool = False,
        started: set[asyncio.Task[None]] | None = None,
    ) -> bool:
        """Fold ``event`` and start its reaction, unless it was dispatched already; return
        whether it was dispatched. The reaction started, if any, is added to ``started``.

        ``consumed``: ``event`` was read back from a log other writers share (Kafka), so one
        at a seq already dispatched is skipped, and another writer's event is noted as
        appended (its cause handled, its seq taken). Not our own: it may come back while
        its append is in flight, and ``emit`` advances the seq itself.
        """
        event_id = event.event_id
        if event_id in self.seen:
            return False
        if consumed:
            if event.seq <= self.last_seq:
                return False
            if event_id in self.own:
                self.own.discard(event_id)
            else:
                self.driver.note_appended((event,))
        else:
            self.own.discard(event_id)  # ours, dispatched as the append returned it
        reaction = self.driver.dispatch(event)
        if reaction is not None and started is not None:
            started.add(reaction)
        self.seen.add(event_id)
        if event.seq > self.last_seq:
            self.last_seq = event.seq
        return True

    def arrival(self, event: Event) -> Arrival:
        """What to do with ``event``, read from the log after the host started."""
        if event.event_id in self.seen:
            return "dispatched"
        if event.event_id not in self.own and self._misplaced(event):
            return "stamp"
        if event.seq <= self.last_seq:
            return "taken"
        if event.seq > self.last_seq + 1:
            return "gap"
        return "next"

    def _misplaced(self, event: Event) -> bool:
        """Whether another writer's event needs this host's stamp before it counts."""
        if event.seq == 0:
            return True
        # A decision stamped by its producer counts only at exactly the next free seq:
        # one already taken, or claimed by our own appends in flight, would fork the order.
        next_free = event.seq == self.last_seq + 1 and event.seq >= self.driver.next_seq
        return event.type in EXTERNAL_DECISIONS and not next_free

    def take_in(self, fresh: Sequence[Event]) -> list[Event] | None:
        """Events another process appended after this host's last, each at its own free
        seq: taken in (noted as appended) when all are decisions, to be dispatched next;
        ``None`` when any is not (another runner is writing the task)."""
        if any(e.type not in EXTERNAL_DECISIONS for e in fresh):
            return None
        self.driver.note_appended(fresh)
        return list(fresh)

    def stamp(self, event: Event) -> asyncio.Task[None] | None:
        """Append another writer's decision again at the task's next seq (same event id).

        The task's order is then the order its one writer gave it: the copy is read back
        and dispatched like the host's own events, and a rebuild reads it at that seq (a
        log counts an event at its highest seq). Returns the append in flight, or None when
        there is nothing to stamp.
        """
        if event.event_id in self.seen or event.event_id in self.stamping:
            return None
        if event.type not in EXTERNAL_DECISIONS:
            self._log.warning("task %s: unstamped %s skipped", event.task_id, event.type)
            return None
        if self.finished:
            self._log.warning("task %s already ended; %s ignored", event.task_id, event.type)
            return None
        self.stamping.add(event.event_id)
        return self.driver.emit_later([event])

    def expired(self, now: datetime | None = None) -> list[EventBase]:
        """``approval_expired`` for the deadlines that passed by ``now`` and were not expired
        yet by this host (each once: ``expiring``, and a deadline whose event is already
        some event's cause is skipped). The caller emits them."""
        driver = self.driver
        if driver.fatal is not None:
            return []
        due = [
            e
            for e in expired_approvals(driver.state, now)
            if e.causation_id
            and e.causation_id not in self.expiring
            and not driver.handled(e.causation_id)
        ]
        self.expiring.update(e.causation_id for e in due if e.causation_id)
        return due

    async def _sink(self, batch: list[EventBase]) -> None:
        self.own.update(e.event_id for e in batch)
        try:
            await self._append(batch)
        except BaseException:
            self.own.difference_update(e.event_id for e in batch)
            raise
