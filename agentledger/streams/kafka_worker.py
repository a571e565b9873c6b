"""The distributed worker's core: the processors of one workflow, hosted on Kafka topics.

Workers of one workflow form one consumer group, ``<prefix>.workers``, reading two
topics (see ``kafka_topics``):

``<prefix>.goals``
    A ``goal_submitted`` event keyed by its task id. The worker appends it to the events
    topic as seq 1, unless the task already has events there (a goal submitted twice, or
    delivered twice, starts one task).
``<prefix>.events``
    The event log. For every task on a partition it holds, the worker keeps a
    ``TaskDriver``. On first sight of a task (a new task, a restart, or a partition handed
    over by a rebalance) it rebuilds the driver exactly as ``EmbeddedRunner`` does: read
    the task's history, ``driver.load(history)``, re-dispatch the history in order (the
    driver skips handled events, so only reactions lost with a crashed worker run again).
    After that it dispatches events as they are consumed, skipping any event id it already
    dispatched. The driver's sink is ``KafkaEventLog.append``; the events it appends come
    back through the consumer and are dispatched then, in seq order.

Approvals. A person's decision is produced by another process unstamped (seq 0); the
worker appends it again at the task's next seq and dispatches that copy (``_stamp``), so
the task keeps one writer and one order. A pending ``approval_requested`` record is
acknowledged only once its approval is decided, and a timer records ``approval_expired``
for the deadlines that passed in the tasks the worker drives (``expire_approvals``).

Offsets. A consumed record is acknowledged only once every reaction its dispatch started
has finished (so its output is in the log), and a request for approval once it is decided; faust commits the contiguous acknowledged
prefix of each partition. A committed offset therefore never passes an event whose
reaction is unfinished. Offsets are still only an optimisation: correctness comes from
"handled means caused" and the rebuild from history, so a record delivered twice (a crash
before the commit, a rebalance) costs a rebuild and nothing else.

Rebalances (eager: every member gives up every partition, then gets its new share). On
revoke the worker stops dispatching, waits up to ``revoke_grace_s`` for the reactions in
flight, and cancels the rest; a task whose reactions were cancelled is forgotten and
rebuilt on next sight (its unacknowledged record is delivered again). Tasks on partitions
the worker keeps stay as they were.

Bad input never stops the worker: undecodable records, unknown event types, invalid
events, goals that are not ``goal_submitted``, events of a task without a goal, and tasks
of another workflow go to ``<prefix>.dlq`` (``kafka_dlq.dead_letter``) with the reason.

Consumers: ``kafka_group``, a bare aiokafka group on the worker's own loop (the default:
it measured 1.2-2.6x the steps/s of faust), or ``kafka_faust`` (``--consumer faust``),
whose manual acknowledgements also commit only gap-free prefixes. Everything that decides
what to do with a record lives in ``WorkerCore``, which knows neither.

Clients by injection. ``WorkerCore`` is given its event log, its dead-letter producer and
a way to list the broker's topics (``WorkerClients``); ``kafka_worker_clients`` builds the
Kafka ones (``kafka_clients``), and ``kafka_memory.MemoryTopics`` in-memory ones, so this
logic is tested in milliseconds without a broker.

Example::

    core = WorkerCore(runtime, WorkerConfig("127.0.0.1:9092"))  # Kafka clients by default
    reactions = await core.on_event(record)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from aiokafka.errors import KafkaError

from agentledger.agents.approvals import EXTERNAL_DECISIONS, expired_approvals
from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.errors import EventLogError, RecordTooLargeError, UsageError
from agentledger.schemas import (
    TERMINAL_TYPES,
    ApprovalRequested,
    Event,
    EventBase,
    GoalSubmitted,
)
from agentledger.security.guard import admit_goal
from agentledger.streams.driver import TaskDriver
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord
from agentledger.streams.kafka_clients import broker_topics, dead_letter_producer
from agentledger.streams.kafka_dlq import (
    RecordSender,
    dead_letter,
    dead_letter_reference,
    park_whole,
    record_size,
)
from agentledger.streams.kafka_topics import DEFAULT_PREFIX, MAX_RECORD_BYTES, TopicLayout
from agentledger.streams.log import CorruptRecord, LogEntry, Recorded
from agentledger.streams.task_start import MAX_START_AHEAD_MS, start_ahead_ms
from agentledger.streams.write_guard import WriteGuard

# The worker's one logger, under the name it has always had (log configs refer to it).
log = logging.getLogger("agentledger.streams.kafka_runner")

EXIT_BROKER_LOST = 4
"""The worker's exit code after ``broker_lost_exit_s`` without its broker (the CLI's
EXIT_LOG: the event log is unreachable)."""

_REMEMBERED = 10_000
"""Finished and rejected task ids kept, so their stray records are skipped cheaply."""


def worker_group(prefix: str) -> str:
    """The consumer group (and faust app id) of the workers under ``prefix``."""
    return f"{TopicLayout(prefix).prefix}.workers"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker connects and how patient it is. Times in seconds."""

    bootstrap: str
    prefix: str = DEFAULT_PREFIX
    session_timeout_s: float = 10.0
    """A worker silent this long is considered dead and its partitions move."""
    heartbeat_interval_s: float | None = None
    """Default: a fifth of the session timeout."""
    rebalance_timeout_s: float | None = None
    """How long members may take to rejoin; default: the session timeout plus revoke grace."""
    fetch_max_wait_ms: int = 100
    """Broker-side fetch wait: how long an idle poll waits (data ends the wait at once)."""
    commit_interval_s: float = 1.0
    revoke_grace_s: float = 5.0
    """On a rebalance, how long reactions in flight may finish before they are cancelled."""
    shutdown_timeout_s: float = 30.0
    """On SIGTERM, how long reactions in flight may finish before they are cancelled."""
    health_interval_s: float = 30.0
    approval_check_interval_s: float = 1.0
    """How often the worker looks for approval deadlines that passed, in the tasks it drives."""
    request_timeout_s: float = 30.0
    park_attempts: int = 5
    """Tries to park a dead letter whole, then as many as a reference, before the record is
    skipped (logged with its coordinates and counted in ``skipped_records``)."""
    broker_probe_interval_s: float = 1.0
    """How often the worker asks the broker for metadata, to notice it is gone."""
    broker_lost_exit_s: float = 60.0
    """After this long without a broker (or without the layout's topics) the worker exits
    with EXIT_BROKER_LOST, so a supervisor restarts it; 0: never."""
    log_level: str = "WARN"
    consumer: str = "aiokafka"
    """The consumer group runtime: ``aiokafka`` (``kafka_group``, the consumer on the
    worker's own loop; the default, it measured faster) or ``faust`` (``kafka_faust``)."""
    goal_intake: int = 4
    """Goals taken in at once (each waits on its duplicate check, a read, and an append)."""


class WorkerLog(Protocol):
    """The event log a worker appends to and rebuilds tasks from (``KafkaEventLog``)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]: ...

    async def read_task(
        self, task_id: str, *, after_seq: int = 0, unstamped: bool = False, whole: bool = False
    ) -> list[LogEntry]: ...

    def partition_for(self, task_id: str) -> int: ...


class DeadLetterProducer(RecordSender, Protocol):
    """The producer a worker parks dead letters with (``kafka_clients.dead_letter_producer``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerClients:
    """What a worker core talks to: its log, its dead-letter producer, and ``topics``, which
    lists the topics the broker has now (the broker probe; raises when it is unreachable)."""

    log: WorkerLog
    dead_letters: DeadLetterProducer
    topics: Callable[[], Awaitable[set[str]]]


def kafka_worker_clients(config: WorkerConfig, guard: WriteGuard | None = None) -> WorkerClients:
    """The Kafka clients of a worker process (not started; ``WorkerCore.start`` starts them).
    ``guard`` masks every batch the worker appends (default: the settings' vault)."""
    timeout_ms = int(config.request_timeout_s * 1000)
    event_log = KafkaEventLog(
        config.bootstrap,
        prefix=config.prefix,
        client_id=f"agentledger-worker-{os.getpid()}",
        fetch_max_wait_ms=config.fetch_max_wait_ms,
        request_timeout_ms=timeout_ms,
        guard=guard,
        readers=config.goal_intake + 1,  # a rebuild never waits behind the goals' reads
    )
    producer = dead_letter_producer(
        config.bootstrap,
        client_id=f"agentledger-worker-dlq-{os.getpid()}",
        request_timeout_ms=timeout_ms,
    )
    return WorkerClients(event_log, producer, functools.partial(broker_topics, producer))


class _Hosted:
    """One task this worker drives."""

    __slots__ = ("driver", "expiring", "holds", "last_seq", "own", "partition", "seen", "stamping")

    driver: TaskDriver

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.last_seq = 0
        self.own: set[str] = set()  # ids of events this driver appended, until consumed back
        self.seen: set[str] = set()  # ids of events dispatched
        self.stamping: set[str] = set()  # ids of other writers' decisions being stamped
        self.expiring: set[str] = set()  # deadlines (their events' ids) whose expiry is sent
        # Requests' records held unacknowledged until their approval is decided.
        self.holds: list[tuple[str, asyncio.Future[None]]] = []

    def waiting(self) -> int:
        """How many approvals the task waits for."""
        return len(self.driver.state.pending_approvals)

    def release(self) -> None:
        """Acknowledge the request records whose approval is decided (or whose task ended)."""
        state = self.driver.state
        kept = []
        for approval_id, hold in self.holds:
            approval = state.approvals.get(approval_id)
            if hold.done():
                continue
            if state.terminal or approval is None or approval.status in ("granted", "denied"):
                hold.set_result(None)
            else:
                kept.append((approval_id, hold))
        self.holds = kept

    def drop_holds(self) -> None:
        """Never acknowledge the held records: whoever drives the task next sees them again."""
        for _, hold in self.holds:
            hold.cancel()
        self.holds = []


class WorkerCore:
    """What a worker does with each record, independent of the consumer framework.

    The framework calls ``on_goal`` and ``on_event`` for each record, in partition order,
    one at a time, and acknowledges a record when told to (``on_event`` hands back the
    reactions to wait for); it calls ``on_revoked``/``on_assigned`` around rebalances and
    ``shutdown`` at the end.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: WorkerConfig,
        clients: WorkerClients | None = None,
        *,
        out: TextIO | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.layout = TopicLayout(config.prefix)
        self.out = out or sys.stdout
        self.clients = clients or kafka_worker_clients(
            config, WriteGuard(runtime.masker, masked=runtime.workflow.security.masked)
        )
        self.log = self.clients.log
        self._started = False
        self._start_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # one record (or recovery) at a time touches the tasks
        self._tasks: dict[str, _Hosted] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._intake: dict[str, list[Any]] = {}  # task id -> [lock, goals waiting] (on_goal)
        self._rejected: OrderedDict[str, str] = OrderedDict()
        self._assigned: dict[str, set[int]] = {}
        self._paused = False
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()
        self._appends: set[asyncio.Future[list[Recorded]]] = set()
        # Reactions that finished without their output in the log (the append failed).
        self._unrecorded: weakref.WeakSet[asyncio.Future[None]] = weakref.WeakSet()
        self.dead_letters = 0
        self.skipped_records = 0  # could not even be parked: logged, skipped, counted
        self.degraded_since: datetime | None = None  # when the broker was last seen lost
        self.degraded_reason = ""
        self.goals_started = 0
        self.tasks_finished = 0

    @property
    def workflow(self) -> Workflow:
        return self.runtime.workflow

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            await self.log.start()
            producer = self.clients.dead_letters
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise EventLogError(
                    f"cannot reach Kafka at {self.config.bootstrap}: {exc}"
                ) from exc
            self._started = True

    async def on_revoked(self) -> None:
        """A rebalance began: stop dispatching, let reactions finish briefly, cancel the rest."""
        self._paused = True
        inflight = self._inflight()
        if inflight:
            await asyncio.wait(inflight, timeout=self.config.revoke_grace_s)
        async with self._lock:
            for task_id, hosted in list(self._tasks.items()):
                # Held request records are delivered again from the committed offset.
                hosted.drop_holds()
                if hosted.driver.busy:
                    # Cancelled reactions are lost here; their records were not acknowledged,
                    # so whoever owns the partition next sees them again and rebuilds.
                    await hosted.driver.cancel()
                    del self._tasks[task_id]
                    log.warning(
                        "task %s: reactions cancelled by a rebalance; redone from the log", task_id
                    )
            await self._settle_appends()

    async def on_assigned(self, assigned: Mapping[str, set[int]]) -> None:
        """A rebalance ended: forget tasks on partitions that went elsewhere."""
        async with self._lock:
            self._assigned = {topic: set(parts) for topic, parts in assigned.items()}
            mine = self._assigned.get(self.layout.events, set())
            for task_id, hosted in list(self._tasks.items()):
                if hosted.partition not in mine:
                    hosted.drop_holds()
                    await hosted.driver.cancel()
                    del self._tasks[task_id]
            self._paused = False
        self.print_health("assigned")

    async def shutdown(self) -> None:
        """Stop: let reactions in flight finish (up to the timeout), cancel the rest, close."""
        self._stopping = self._paused = True
        inflight = self._inflight() | self._background
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=self.config.shutdown_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._settle_appends()
        unfinished = sum(1 for h in self._tasks.values() if not h.driver.state.terminal)
        self.print_health("stopped", extra=f"unfinished_tasks={unfinished}")
        if self._started:
            self._started = False
            await self.clients.dead_letters.stop()
        await self.log.close()
        await self.runtime.aclose()

    def idle(self) -> bool:
        """Whether nothing is in flight: no reaction, no append, no background recovery."""
        return not (self._inflight() or self._appends or self._background)

    # -- records ---------------------------------------------------------------------------

    async def on_goal(self, record: KafkaRecord) -> None:
        """Start the task of a submitted goal (seq 1 on the events topic), once."""
        await self.start()
        if await self._refused_oversize(record, self.layout.goals):
            return
        entry = record.entry()
        if isinstance(entry, CorruptRecord):
            await self._dead_letter(record, self.layout.goals, f"invalid goal: {entry.reason}")
            return
        event = entry.event
        if not isinstance(event, GoalSubmitted):
            await self._dead_letter(
                record,
                self.layout.goals,
                f"the goals topic takes goal_submitted events, got {event.type}",
            )
            return
        problem = self._foreign(event) or _dated_ahead(event.task_id)
        if problem is not None:
            await self._dead_letter(record, self.layout.goals, problem)
            return
        # Goals may be taken in concurrently (the consumers run several at once); two goals
        # of one task never are, so its duplicate check below sees the first one's append.
        intake = self._intake.setdefault(event.task_id, [asyncio.Lock(), 0])
        intake[1] += 1
        try:
            async with intake[0]:
                await self._take_in(record, event)
        finally:
            intake[1] -= 1
            if not intake[1]:
                del self._intake[event.task_id]

    async def _take_in(self, record: KafkaRecord, event: GoalSubmitted) -> None:
        if event.task_id in self._tasks or event.task_id in self._finished:
            # Known here: this worker appended its goal or consumed its events. No read.
            log.info("goal of task %s already started; duplicate skipped", event.task_id)
            return
        existing = await self._retrying(lambda: self.log.read_task(event.task_id))
        if existing:
            log.info("goal of task %s already started; duplicate skipped", event.task_id)
            return
        goal = event if event.seq == 1 else event.model_copy(update={"seq": 1})
        admitted = admit_goal(goal, self.runtime)  # screened and masked before it is written
        try:
            await self._retrying(lambda: self.log.append(admitted))
        except RecordTooLargeError as exc:
            await self._dead_letter(record, self.layout.goals, f"oversize goal: {exc}")
            return
        self.goals_started += 1
        await self._host_started(event.task_id, admitted)

    async def _host_started(self, task_id: str, admitted: Sequence[EventBase]) -> None:
        """Host a task whose goal this worker just appended as seq 1, if its events partition
        is ours: its history is that goal (and its screening events) alone, so the goal, when
        consumed, is dispatched like any event of a hosted task, without a rebuild (a read of
        the partition). Its MCP tools are pinned first, under the lock: no event of the
        task is dispatched before the toolset holds its pins."""
        partition = self.log.partition_for(task_id)
        async with self._lock:
            mine = self._assigned.get(self.layout.events, set())
            if self._paused or task_id in self._tasks or partition not in mine:
                return
            hosted = _Hosted(partition)
            hosted.driver = TaskDriver(self.runtime, task_id, functools.partial(self._sink, hosted))
            self._tasks[task_id] = hosted
            hosted.driver.note_appended(admitted)  # the pins go after what the log holds
            try:
                await self._start_mcp(hosted, admitted)
            except EventLogError as exc:
                log.error("task %s: recording its MCP tool pins failed: %s", task_id, exc)
                del self._tasks[task_id]  # rebuilt from the log when its goal is consumed

    async def _start_mcp(self, hosted: _Hosted, history: Sequence[EventBase]) -> None:
        """The MCP tools a task sees, as ``EmbeddedRunner`` does: adopt the pins its history
        recorded, or (none recorded yet) pin the servers' tools now and append the
        ``mcp_tools_pinned`` events before any event of the task is dispatched. One toolset
        serves every task of the worker (see docs/mcp.md). Raises ``EventLogError``."""
        mcp = self.workflow.mcp
        if mcp is None:
            return
        if any(e.event_type in TERMINAL_TYPES for e in history):
            mcp.adopt(history)  # an ended task: nothing will call a tool
            return
        pins = await mcp.start_task(self.workflow.mcp_tools, history)
        if pins:
            await hosted.driver.emit(pins)

    async def on_event(self, record: KafkaRecord) -> set[asyncio.Future[None]] | None:
        """Dispatch one consumed event; return what must finish before acknowledging it.

        That is the reactions it started and, for an ``approval_requested`` still pending,
        a hold released when the approval is decided: a committed offset never passes a
        request waiting for a person, so a restarted worker meets the task again (and its
        expiry timer covers it). None: the record was not processed (a rebalance is under
        way) and must not be acknowledged; it is delivered again once the rebalance settles.
        """
        await self.start()
        if await self._refused_oversize(record, self.layout.events):
            return set()
        entry = record.entry()
        if isinstance(entry, CorruptRecord):
            await self._dead_letter(record, self.layout.events, f"invalid event: {entry.reason}")
            return set()
        event = entry.event
        if event.seq == 0 and event.type not in EXTERNAL_DECISIONS:
            await self._dead_letter(
                record,
                self.layout.events,
                f"{event.type} has no seq; only approval decisions "
                f"({', '.join(sorted(EXTERNAL_DECISIONS))}) may be appended unstamped",
            )
            return set()
        async with self._lock:
            if self._paused:
                return None
            task_id = event.task_id
            if task_id in self._finished:
                if event.seq == 0:
                    log.warning("task %s already ended; %s ignored", task_id, event.type)
                return set()
            rejected = self._rejected.get(task_id)
            if rejected is not None:
                await self._dead_letter(record, self.layout.events, rejected)
                return set()
            hosted = self._tasks.get(task_id)
            if hosted is None:
                started = await self._rebuild(task_id, record.partition)
                if task_id in self._rejected:
                    await self._dead_letter(record, self.layout.events, self._rejected[task_id])
            else:
                started = await self._consume(hosted, event)
            return set[asyncio.Future[None]](started) | self._hold(task_id, event)

    async def _consume(self, hosted: _Hosted, event: Event) -> set[asyncio.Task[None]]:
        """An event of a task this worker drives already: dispatch it if it is new.

        New means an event id not dispatched yet, at the next seq. Another writer's
        approval decision unstamped (seq 0), or at a seq that is not the next free one, is
        stamped instead: appended again, same event id, at the next seq, and dispatched
        when that copy comes back (see ``_stamp``).
        """
        task_id = event.task_id
        if event.event_id in hosted.seen:
            return set()  # already dispatched (ours coming back late, a duplicate)
        if event.event_id not in hosted.own and self._misplaced(hosted, event):
            return self._stamp(hosted, event)
        if event.seq <= hosted.last_seq:
            log.warning(
                "task %s: %s %s at seq %d, a seq already taken; another writer? ignored",
                task_id,
                event.type,
                event.event_id,
                event.seq,
            )
            return set()
        if event.seq > hosted.last_seq + 1:
            # Something between was never consumed here: take it from the log, in order.
            log.warning(
                "task %s: consumed seq %d after seq %d; catching up from the log",
                task_id,
                event.seq,
                hosted.last_seq,
            )
            entries = await self._retrying(
                lambda: self.log.read_task(task_id, after_seq=hosted.last_seq)
            )
            missing = [e.event for e in entries if isinstance(e, Recorded)]
            if event.event_id not in {e.event_id for e in missing}:
                missing.append(event)
            return self._dispatch(hosted, missing, consumed=True)
        return self._dispatch(hosted, [event], consumed=True)

    @staticmethod
    def _misplaced(hosted: _Hosted, event: Event) -> bool:
        """Whether another writer's event needs this worker's stamp before it counts."""
        if event.seq == 0:
            return True
        # A decision stamped by its producer counts only at exactly the next free seq:
        # one already taken, or claimed by our own appends in flight, would fork the order.
        next_free = event.seq == hosted.last_seq + 1 and event.seq >= hosted.driver.next_seq
        return event.type in EXTERNAL_DECISIONS and not next_free

    def _stamp(self, hosted: _Hosted, event: Event) -> set[asyncio.Task[None]]:
        """Append another writer's decision again at the task's next seq (same event id).

        The task's order is then the order this worker, its one writer, gave it: the copy
        comes back through the consumer and is dispatched like our own events, and a
        rebuild reads it at that seq (``read_task`` counts an event at its highest seq).
        """
        if event.event_id in hosted.seen or event.event_id in hosted.stamping:
            return set()
        if event.type not in EXTERNAL_DECISIONS:
            log.warning("task %s: unstamped %s skipped", event.task_id, event.type)
            return set()
        if hosted.driver.state.terminal:
            log.warning("task %s already ended; %s ignored", event.task_id, event.type)
            return set()
        hosted.stamping.add(event.event_id)
        reaction = hosted.driver.emit_later([event])
        reaction.add_done_callback(functools.partial(self._after_reaction, hosted))
        return {reaction}

    def _hold(self, task_id: str, event: Event) -> set[asyncio.Future[None]]:
        """For a request still waiting for a person: a future resolved once it is decided."""
        hosted = self._tasks.get(task_id)
        if hosted is None or not isinstance(event, ApprovalRequested):
            return set()
        state = hosted.driver.state
        approval = state.approvals.get(event.approval_id)
        if state.terminal or approval is None or approval.status in ("granted", "denied"):
            return set()
        hold: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hosted.holds.append((event.approval_id, hold))
        return {hold}

    async def expire_approvals(self, now: datetime | None = None) -> int:
        """Record ``approval_expired`` for each pending approval whose deadline passed, in
        the tasks this worker drives; the timeout policy reacts to it as in the embedded
        runner. Returns how many it recorded.

        Each deadline is expired once per worker (``expiring``, and a deadline whose event
        is already some event's cause is skipped). Should two workers still both expire
        one (a zombie outliving its membership), the fold and ``ApprovalGate`` act on the
        first and ignore the other.
        """
        count = 0
        async with self._lock:
            if self._paused or self._stopping:
                return 0
            for hosted in list(self._tasks.values()):
                driver = hosted.driver
                if driver.fatal is not None:
                    continue
                due = [
                    e
                    for e in expired_approvals(driver.state, now)
                    if e.causation_id
                    and e.causation_id not in hosted.expiring
                    and not driver.handled(e.causation_id)
                ]
                if not due:
                    continue
                hosted.expiring.update(e.causation_id for e in due if e.causation_id)
                reaction = driver.emit_later(due)
                reaction.add_done_callback(functools.partial(self._after_reaction, hosted))
                count += len(due)
        return count

    def when_settled(self, reactions: set[asyncio.Future[None]], ack: Callable[[], None]) -> None:
        """Call ``ack`` once all ``reactions`` finished with their output recorded.

        A reaction that was cancelled, or whose output could not be appended, never
        acknowledges: its record is delivered again after a restart or rebalance.
        """
        remaining = len(reactions)
        failed = False

        def done(task: asyncio.Future[None]) -> None:
            nonlocal remaining, failed
            remaining -= 1
            if task.cancelled() or task in self._unrecorded:
                failed = True
            if remaining == 0 and not failed:
                ack()

        for reaction in reactions:
            reaction.add_done_callback(done)

    # -- health ----------------------------------------------------------------------------

    def health(self) -> str:
        goals = sorted(self._assigned.get(self.layout.goals, set()))
        events = sorted(self._assigned.get(self.layout.events, set()))
        active = sum(1 for h in self._tasks.values() if not h.driver.state.terminal)
        inflight = sum(len(h.driver.inflight()) for h in self._tasks.values())
        waiting = sum(h.waiting() for h in self._tasks.values() if not h.driver.state.terminal)
        return (
            f"pid={os.getpid()} group={worker_group(self.config.prefix)} "
            f"workflow={self.workflow.name} goals={_parts(goals)} events={_parts(events)} "
            f"tasks_active={active} reactions_inflight={inflight} "
            f"tasks_finished={self.tasks_finished} goals_started={self.goals_started} "
            f"dead_letters={self.dead_letters} skipped_records={self.skipped_records} "
            f"approvals_waiting={waiting} {self._status()}"
        )

    def _status(self) -> str:
        if self.degraded_since is None:
            return "status=ok"
        since = self.degraded_since.isoformat(timespec="seconds").replace("+00:00", "Z")
        reason = " ".join(self.degraded_reason.split()).replace('"', "'")
        return f'status=degraded since={since} reason="{reason}"'

    async def probe_broker(self, now: datetime | None = None) -> bool:
        """Ask the broker for metadata; note (and print) a loss or a recovery.

        Degraded: the broker does not answer within the probe interval (at least 1 s), or
        it answers without the layout's topics (an empty broker came back). Returns whether
        the broker is healthy.
        """
        timeout = max(1.0, self.config.broker_probe_interval_s * 2)
        problem = ""
        try:
            if not self._started:
                await asyncio.wait_for(self.start(), timeout)
            topics = await asyncio.wait_for(self.clients.topics(), timeout)
            missing = [t for t in self.layout.names() if t not in topics]
            if missing:
                problem = f"topics missing on {self.config.bootstrap}: {', '.join(missing)}"
        except (KafkaError, EventLogError, OSError, TimeoutError) as exc:
            problem = f"broker {self.config.bootstrap} unreachable: {exc or type(exc).__name__}"
        at = now or datetime.now(UTC)
        if not problem:
            if self.degraded_since is not None:
                lost = (at - self.degraded_since).total_seconds()
                self.degraded_since, self.degraded_reason = None, ""
                _quiet_clients(False)
                log.warning("broker back after %.1f s", lost)
                self.print_health("recovered")
            return True
        self.degraded_reason = problem
        if self.degraded_since is None:
            self.degraded_since = at
            log.error("broker lost: %s", problem)
            # aiokafka logs every failed connection, several times a second per client;
            # the health line says it once. Muted until the broker is back.
            _quiet_clients(True)
            self.print_health("degraded")
        return False

    def broker_lost_for(self, now: datetime | None = None) -> float:
        """Seconds since the broker was found lost (0 while it is healthy)."""
        if self.degraded_since is None:
            return 0.0
        return ((now or datetime.now(UTC)) - self.degraded_since).total_seconds()

    async def probe_or_exit(self) -> None:
        """Probe the broker; once it has been gone for ``broker_lost_exit_s``, end the
        process with EXIT_BROKER_LOST so a supervisor restarts it. Like a crash, on purpose:
        a clean shutdown would wait on the lost broker (commits, flushes), and nothing here
        needs it: unfinished work is redone from the log."""
        await self.probe_broker()
        lost = self.broker_lost_for()
        limit = self.config.broker_lost_exit_s
        if limit and lost >= limit:
            self.print_health("exiting", extra=f"broker_lost_s={lost:.1f}")
            log.error(
                "no broker for %.1f s (--broker-lost-exit %g); exiting with code %d so a "
                "supervisor restarts the worker; unfinished work is redone from the log",
                lost,
                limit,
                EXIT_BROKER_LOST,
            )
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_BROKER_LOST)

    def print_health(self, what: str = "health", *, extra: str = "") -> None:
        line = f"worker {what}: {self.health()}" + (f" {extra}" if extra else "")
        print(line, file=self.out, flush=True)

    # -- internals -------------------------------------------------------------------------

    def _foreign(self, goal: GoalSubmitted) -> str | None:
        if goal.workflow.name != self.workflow.name:
            return (
                f"task {goal.task_id} runs workflow {goal.workflow.name!r}; workers in group "
                f"{worker_group(self.config.prefix)} run {self.workflow.name!r}"
            )
        return None

    async def _rebuild(self, task_id: str, partition: int) -> set[asyncio.Task[None]]:
        """First sight of a task: load its history and re-dispatch it, like EmbeddedRunner."""
        entries = await self._retrying(lambda: self.log.read_task(task_id, unstamped=True))
        if not any(isinstance(e, Recorded) and e.event.seq == 1 for e in entries):
            # A record of the task is in hand, so it has a history: if none was found from
            # its start time (an older writer's records, stamped before it), read it whole.
            entries = await self._retrying(
                lambda: self.log.read_task(task_id, unstamped=True, whole=True)
            )
        history: list[Event] = []
        unstamped: list[Event] = []
        for entry in entries:
            if isinstance(entry, Recorded):
                (history if entry.event.seq else unstamped).append(entry.event)
            else:
                log.error("task %s: %s; skipping it", task_id, entry.error())
        goal = next((e for e in history if isinstance(e, GoalSubmitted)), None)
        if goal is None:
            self._reject(
                task_id,
                f"task {task_id} has no goal_submitted event in {self.layout.events}; "
                "its events cannot be processed",
            )
            return set()
        problem = self._foreign(goal)
        if problem is not None:
            self._reject(task_id, problem)
            return set()
        if goal.workflow.digest and goal.workflow.digest != self.workflow.digest:
            log.warning(
                "task %s was submitted for another version of %s", task_id, goal.workflow.name
            )
        hosted = _Hosted(partition)
        driver = TaskDriver(self.runtime, task_id, functools.partial(self._sink, hosted))
        hosted.driver = driver
        driver.load(history)
        self._tasks[task_id] = hosted
        try:
            await self._start_mcp(hosted, history)
        except EventLogError:
            del self._tasks[task_id]  # rebuilt again, like any failed read of its history
            raise
        started = self._dispatch(hosted, history, consumed=False)
        for event in unstamped:  # decisions whose stamp the previous owner never recorded
            if self._tasks.get(task_id) is hosted:
                started |= self._stamp(hosted, event)
        return started

    def _dispatch(
        self, hosted: _Hosted, events: Sequence[Event], *, consumed: bool
    ) -> set[asyncio.Task[None]]:
        driver = hosted.driver
        before = driver.inflight()
        for event in events:
            if event.event_id in hosted.seen:
                continue
            if consumed:
                if event.seq <= hosted.last_seq:
                    continue
                if event.event_id in hosted.own:
                    hosted.own.discard(event.event_id)
                else:
                    # Another writer's event (an operator, a previous owner): its cause is
                    # handled and its seq taken. Not for our own events: they may come back
                    # while their append is still in flight, and emit advances the seq itself.
                    driver.note_appended([event])
            driver.dispatch(event)
            hosted.seen.add(event.event_id)
            hosted.last_seq = max(hosted.last_seq, event.seq)
        hosted.release()
        started = driver.inflight() - before
        for reaction in started:
            reaction.add_done_callback(functools.partial(self._after_reaction, hosted))
        self._maybe_finish(hosted)
        return started

    def _after_reaction(self, hosted: _Hosted, reaction: asyncio.Task[None]) -> None:
        driver = hosted.driver
        if driver.fatal is not None:
            self._unrecorded.add(reaction)
        if driver.fatal is not None and self._tasks.get(driver.task_id) is hosted:
            log.error("task %s: appending failed (%s); rebuilding it", driver.task_id, driver.fatal)
            hosted.drop_holds()  # their records come again at the next rebalance or restart
            del self._tasks[driver.task_id]
            self._spawn(self._recover(hosted))
            return
        self._maybe_finish(hosted)

    def _maybe_finish(self, hosted: _Hosted) -> None:
        driver = hosted.driver
        if driver.state.terminal and not driver.busy and self._tasks.get(driver.task_id) is hosted:
            del self._tasks[driver.task_id]
            self._remember(self._finished, driver.task_id, None)
            self.tasks_finished += 1

    async def _recover(self, hosted: _Hosted) -> None:
        """A task whose output could not be appended: start it again from the log."""
        await hosted.driver.cancel()
        delay = 0.5
        while not self._stopping:
            await asyncio.sleep(delay)
            async with self._lock:
                task_id = hosted.driver.task_id
                mine = self._assigned.get(self.layout.events, set())
                if self._paused or task_id in self._tasks or hosted.partition not in mine:
                    return  # a rebalance or a newer record takes care of it
                try:
                    await self._rebuild(task_id, hosted.partition)
                    return
                except EventLogError as exc:
                    log.error("task %s: rebuilding failed (%s); retrying", task_id, exc)
            delay = min(delay * 2, 10.0)

    async def _sink(self, hosted: _Hosted, batch: list[EventBase]) -> None:
        # Our own events can be consumed back before the append returns; they must not be
        # fed to note_appended (the driver's emit advances its seq itself, see _dispatch).
        hosted.own.update(e.event_id for e in batch)
        # Shielded: a reaction cancelled mid-append (rebalance, shutdown) leaves the append
        # running, and on_revoked waits for it, so the next owner's rebuild sees its result.
        append = asyncio.ensure_future(self.log.append(batch))
        self._appends.add(append)
        append.add_done_callback(self._append_done)
        try:
            await asyncio.shield(append)
        except BaseException:
            hosted.own.difference_update(e.event_id for e in batch)
            raise

    def _append_done(self, append: asyncio.Future[list[Recorded]]) -> None:
        self._appends.discard(append)
        if not append.cancelled():
            append.exception()  # retrieved here; whoever still awaits it gets it too

    async def _settle_appends(self) -> None:
        """Wait until every append started is stored or failed (bounded by the timeout)."""
        if self._appends:
            await asyncio.wait(set(self._appends), timeout=self.config.request_timeout_s)

    async def _refused_oversize(self, record: KafkaRecord, source: str) -> bool:
        """Dead-letter a record larger than the events topic takes; True if it was one.

        Such a record can only come from a producer whose limit was raised beyond ours (and a
        topic to match): it could never be appended, and retrying would block its partition.
        """
        size = record_size(record)
        if size <= MAX_RECORD_BYTES:
            return False
        await self._dead_letter(
            record,
            source,
            f"oversize record: {size} bytes, more than the {MAX_RECORD_BYTES} an event may "
            "take; send it smaller (large data belongs in a file or store the event names)",
        )
        return True

    async def _dead_letter(self, record: KafkaRecord, source: str, reason: str) -> None:
        """Park ``record`` on the DLQ: whole if it fits and the DLQ takes it, else as a
        reference; if even the reference cannot be parked, log it, count it in
        ``skipped_records`` and move on, so no record blocks its partition. (The record
        itself stays in its source topic, which keeps records forever.)"""
        if not self._started:
            raise UsageError("the worker is not started")
        producer = self.clients.dead_letters
        where = f"{source}[{record.partition}]@{record.kafka_offset}"
        # One line per dead letter, whatever the reason holds (validation errors span lines).
        log.warning("dead letter from %s: %s", where, " ".join(reason.split()))
        if record.value is None and record.key is None:
            return  # nothing to park (an empty tombstone); skipping it loses nothing
        attempts = max(1, self.config.park_attempts)
        if park_whole(record):
            try:
                await self._retrying(
                    lambda: self._park(producer, record, source, reason), attempts=attempts
                )
                self.dead_letters += 1
                return
            except EventLogError as exc:  # too large, or refused attempts times
                log.warning(
                    "dead letter from %s: parking a reference instead (%s)",
                    where,
                    " ".join(str(exc).split()),
                )
        try:
            await self._retrying(
                lambda: dead_letter_reference(producer, self.layout.dlq, record, reason, source),
                attempts=attempts,
            )
        except EventLogError as exc:
            self.skipped_records += 1
            log.error(
                "record %s skipped: not even a reference could be parked on %s (%s); "
                "reason it was refused: %s",
                where,
                self.layout.dlq,
                " ".join(str(exc).split()),
                " ".join(reason.split()),
            )
            return
        self.dead_letters += 1

    async def _park(
        self, producer: RecordSender, record: KafkaRecord, source: str, reason: str
    ) -> object:
        return await dead_letter(
            producer,
            self.layout.dlq,
            record.value,
            record.key,
            reason,
            source,
            record.partition,
            record.kafka_offset,
            headers=record.headers,
            mask=self.runtime.masker.mask,  # raw values kept in the vault, as on the log
        )

    async def _retrying(self, operation: Callable[[], Any], *, attempts: int = 0) -> Any:
        """Run a Kafka operation, retrying broker trouble with backoff while not stopping
        (at most ``attempts`` times if given). A record too large is not retried."""
        delay = 0.2
        tried = 0
        while True:
            try:
                return await operation()
            except RecordTooLargeError:
                raise
            except EventLogError as exc:
                tried += 1
                if self._stopping or (attempts and tried >= attempts):
                    raise
                log.error("Kafka operation failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _reject(self, task_id: str, reason: str) -> None:
        self._remember(self._rejected, task_id, reason)

    @staticmethod
    def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > _REMEMBERED:
            store.popitem(last=False)

    def _inflight(self) -> set[asyncio.Task[None]]:
        out: set[asyncio.Task[None]] = set()
        for hosted in self._tasks.values():
            out |= hosted.driver.inflight()
        return out

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _dated_ahead(task_id: str) -> str | None:
    """Why a task cannot start when its id is dated too far ahead of this clock: its
    records are timestamped at least at that time (``task_start``), which Kafka refuses
    beyond ``message.timestamp.after.max.ms``."""
    ahead = start_ahead_ms(task_id)
    if ahead <= MAX_START_AHEAD_MS:
        return None
    return (
        f"task id {task_id} is dated {ahead / 1000:.0f} s ahead of this worker's clock (at "
        f"most {MAX_START_AHEAD_MS // 1000} s allowed): the submitter's clock is ahead; "
        "correct it and submit the goal again"
    )


def _quiet_clients(quiet: bool) -> None:
    """Mute (or restore) the Kafka client library's own connection-error logging."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if quiet else logging.NOTSET)


def _parts(partitions: Sequence[int]) -> str:
    return "[" + ",".join(str(p) for p in partitions) + "]"
