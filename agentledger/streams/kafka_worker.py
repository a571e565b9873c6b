"""The distributed worker's core: the processors of one workflow, hosted on Kafka topics.

Workers of one workflow form one consumer group, ``<prefix>.workers``, reading two
topics (see ``kafka_topics``):

``<prefix>.goals``
    A ``goal_submitted`` event keyed by its task id. The worker appends it to the events
    topic as seq 1, unless the task already has events there (a goal submitted twice, or
    delivered twice, starts one task).
``<prefix>.events``
    The event log. For every task on a partition it holds, the worker keeps a
    ``TaskHost`` (``task_host``, the lifecycle ``EmbeddedRunner`` uses too). On first sight
    of a task (a new task, a restart, or a partition handed over by a rebalance) it
    rebuilds the host from the task's history: the goal checked against the workflow,
    ``load``, MCP pins, the history re-dispatched in order (the driver skips handled
    events, so only reactions lost with a crashed worker run again). After that it
    dispatches events as they are consumed, skipping any event id it already dispatched.
    The host appends with ``KafkaEventLog.append``; the events it appends come back
    through the consumer and are dispatched then, in seq order.

Approvals. A person's decision is produced by another process unstamped (seq 0); the
worker appends it again at the task's next seq and dispatches that copy (``_stamp``), so
the task keeps one writer and one order. A pending ``approval_requested`` record is
acknowledged only once its approval is decided, and a timer records ``approval_expired``
for the deadlines that passed in the tasks the worker drives (``expire_approvals``).

Offsets. A consumed record is acknowledged only once every reaction its dispatch started
has finished (so its output is in the log), and a request for approval once it is
decided; faust commits the contiguous acknowledged prefix of each partition. A committed offset therefore never passes an event whose
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
of another workflow go to ``<prefix>.dlq`` with the reason (``kafka_dlq.DeadLetters``).
Losing the broker is loud (``kafka_health.BrokerWatch``): a ``degraded`` health line, then
an exit with ``EXIT_BROKER_LOST`` after ``broker_lost_exit_s``.

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
from datetime import datetime
from typing import Any, Protocol, TextIO

from agentledger.agents.approvals import EXTERNAL_DECISIONS
from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.errors import EventLogError, LaneClosedError, RecordTooLargeError
from agentledger.schemas import ApprovalRequested, Event, EventBase, GoalSubmitted
from agentledger.security.guard import admit_goal
from agentledger.streams.driver import TaskDriver
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord
from agentledger.streams.kafka_clients import broker_topics, dead_letter_producer
from agentledger.streams.kafka_dlq import DeadLetterProducer, DeadLetters
from agentledger.streams.kafka_health import EXIT_BROKER_LOST, BrokerWatch
from agentledger.streams.kafka_topics import DEFAULT_PREFIX, TopicLayout
from agentledger.streams.log import CorruptRecord, LogEntry, Recorded
from agentledger.streams.task_host import History, TaskHost, workflow_mismatch
from agentledger.streams.task_start import MAX_START_AHEAD_MS, start_ahead_ms
from agentledger.streams.write_guard import WriteGuard

# The worker's one logger, under the name it has always had (log configs refer to it).
log = logging.getLogger("agentledger.streams.kafka_runner")

__all__ = [  # EXIT_BROKER_LOST and DeadLetterProducer are imported from here too
    "EXIT_BROKER_LOST",
    "DeadLetterProducer",
    "WorkerClients",
    "WorkerConfig",
    "WorkerCore",
    "WorkerLog",
    "kafka_worker_clients",
    "worker_group",
]

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
    exactly_once: bool = False
    """Consume, react, produce and commit offsets in Kafka transactions, reading committed
    data only (``kafka_eos``); runs on the aiokafka consumer."""


class WorkerLog(Protocol):
    """The event log a worker appends to and rebuilds tasks from (``KafkaEventLog``)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]: ...

    async def read_task(
        self, task_id: str, *, after_seq: int = 0, unstamped: bool = False, whole: bool = False
    ) -> list[LogEntry]: ...

    def partition_for(self, task_id: str) -> int: ...


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
        isolation_level="read_committed" if config.exactly_once else "read_uncommitted",
        readers=config.goal_intake + 1,  # a rebuild never waits behind the goals' reads
    )
    producer = dead_letter_producer(
        config.bootstrap,
        client_id=f"agentledger-worker-dlq-{os.getpid()}",
        request_timeout_ms=timeout_ms,
    )
    return WorkerClients(event_log, producer, functools.partial(broker_topics, producer))


class _Hosted:
    """One task this worker drives: its ``TaskHost``, and what acknowledging needs."""

    __slots__ = ("holds", "host", "partition")

    host: TaskHost

    def __init__(self, partition: int) -> None:
        self.partition = partition
        # Requests' records held unacknowledged until their approval is decided.
        self.holds: list[tuple[str, asyncio.Future[None]]] = []

    @property
    def driver(self) -> TaskDriver:
        return self.host.driver

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
        self.dlq = DeadLetters(
            self.clients.dead_letters,
            self.layout.dlq,
            retrying=self._retrying,
            mask=runtime.masker.mask,  # raw values kept in the vault, as on the log
            attempts=config.park_attempts,
        )
        self.broker = BrokerWatch(
            config.bootstrap,
            self.layout.names(),
            list_topics=self.clients.topics,
            start=self.start,
            started=lambda: self._started,
            report=self.print_health,
            probe_interval_s=config.broker_probe_interval_s,
            lost_exit_s=config.broker_lost_exit_s,
        )
        self.goals_started = 0
        self.tasks_finished = 0

    @property
    def workflow(self) -> Workflow:
        return self.runtime.workflow

    @property
    def dead_letters(self) -> int:
        """Records parked on the dead-letter topic."""
        return self.dlq.parked

    @property
    def skipped_records(self) -> int:
        """Records that could not even be parked: logged, skipped, counted."""
        return self.dlq.skipped

    @property
    def degraded_since(self) -> datetime | None:
        """When the broker was last found lost (None while it is healthy)."""
        return self.broker.degraded_since

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            await self.log.start()
            await self.dlq.start(self.config.bootstrap)
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
        self._started = False
        await self.dlq.stop()
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
            hosted = self._host(task_id, partition)
            self._tasks[task_id] = hosted
            hosted.driver.note_appended(admitted)  # the pins go after what the log holds
            try:
                await hosted.host.start_tools(admitted)
            except EventLogError as exc:
                log.error("task %s: recording its MCP tool pins failed: %s", task_id, exc)
                del self._tasks[task_id]  # rebuilt from the log when its goal is consumed

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
        host = hosted.host
        arrival = host.arrival(event)
        if arrival == "dispatched":
            return set()  # already dispatched (ours coming back late, a duplicate)
        if arrival == "stamp":
            return self._stamp(hosted, event)
        if arrival == "taken":
            log.warning(
                "task %s: %s %s at seq %d, a seq already taken; another writer? ignored",
                task_id,
                event.type,
                event.event_id,
                event.seq,
            )
            return set()
        if arrival == "gap":
            # Something between was never consumed here: take it from the log, in order.
            log.warning(
                "task %s: consumed seq %d after seq %d; catching up from the log",
                task_id,
                event.seq,
                host.last_seq,
            )
            entries = await self._retrying(
                lambda: self.log.read_task(task_id, after_seq=host.last_seq)
            )
            missing = [e.event for e in entries if isinstance(e, Recorded)]
            if event.event_id not in {e.event_id for e in missing}:
                missing.append(event)
            return self._dispatch(hosted, missing, consumed=True)
        return self._dispatch(hosted, [event], consumed=True)

    def _stamp(self, hosted: _Hosted, event: Event) -> set[asyncio.Task[None]]:
        """Another writer's decision, appended again at the task's next seq by this worker,
        its one writer (``TaskHost.stamp``); dispatched when that copy comes back."""
        reaction = hosted.host.stamp(event)
        if reaction is None:
            return set()
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

        Each deadline is expired once per worker (``TaskHost.expired``). Should two
        workers still both expire one (a zombie outliving its membership), the fold and
        ``ApprovalGate`` act on the first and ignore the other.
        """
        count = 0
        async with self._lock:
            if self._paused or self._stopping:
                return 0
            for hosted in list(self._tasks.values()):
                due = hosted.host.expired(now)
                if not due:
                    continue
                reaction = hosted.driver.emit_later(due)
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
            f"approvals_waiting={waiting} {self.broker.status()}"
        )

    async def probe_broker(self, now: datetime | None = None) -> bool:
        """Ask the broker for metadata; note (and print) a loss or a recovery; return
        whether it is healthy (``kafka_health.BrokerWatch.probe``)."""
        return await self.broker.probe(now)

    def broker_lost_for(self, now: datetime | None = None) -> float:
        """Seconds since the broker was found lost (0 while it is healthy)."""
        return self.broker.lost_for(now)

    async def probe_or_exit(self) -> None:
        """Probe the broker; exit with EXIT_BROKER_LOST once it has been gone for
        ``broker_lost_exit_s`` (``kafka_health.BrokerWatch.probe_or_exit``)."""
        await self.broker.probe_or_exit()

    def print_health(self, what: str = "health", *, extra: str = "") -> None:
        line = f"worker {what}: {self.health()}" + (f" {extra}" if extra else "")
        print(line, file=self.out, flush=True)

    # -- internals -------------------------------------------------------------------------

    def _foreign(self, goal: GoalSubmitted) -> str | None:
        return workflow_mismatch(goal, self.workflow, runners=self._runners())

    def _runners(self) -> str:
        return f"workers in group {worker_group(self.config.prefix)}"

    def _host(self, task_id: str, partition: int) -> _Hosted:
        hosted = _Hosted(partition)
        hosted.host = TaskHost(
            self.runtime, task_id, functools.partial(self._sink, hosted), logger=log
        )
        return hosted

    async def _rebuild(self, task_id: str, partition: int) -> set[asyncio.Task[None]]:
        """First sight of a task: load its history and re-dispatch it, like EmbeddedRunner."""
        entries = await self._retrying(lambda: self.log.read_task(task_id, unstamped=True))
        if not any(isinstance(e, Recorded) and e.event.seq == 1 for e in entries):
            # A record of the task is in hand, so it has a history: if none was found from
            # its start time (an older writer's records, stamped before it), read it whole.
            entries = await self._retrying(
                lambda: self.log.read_task(task_id, unstamped=True, whole=True)
            )
        history = History.of(entries)
        for bad in history.corrupt:
            log.error("task %s: %s; skipping it", task_id, bad.error())
        problem = history.problem(
            task_id, self.workflow, source=self.layout.events, runners=self._runners()
        )
        if problem is not None:
            self._reject(task_id, problem)
            return set()
        hosted = self._host(task_id, partition)
        hosted.host.load(history.events)
        self._tasks[task_id] = hosted
        try:
            await hosted.host.start_tools(history.events)
        except EventLogError:
            del self._tasks[task_id]  # rebuilt again, like any failed read of its history
            raise
        started = self._dispatch(hosted, history.events, consumed=False)
        for event in history.unstamped:  # decisions whose stamp the previous owner never recorded
            if self._tasks.get(task_id) is hosted:
                started |= self._stamp(hosted, event)
        return started

    def _dispatch(
        self, hosted: _Hosted, events: Sequence[Event], *, consumed: bool
    ) -> set[asyncio.Task[None]]:
        started: set[asyncio.Task[None]] = set()
        for event in events:
            hosted.host.dispatch(event, consumed=consumed, started=started)
        hosted.release()
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
        # Our own events can be consumed back before the append returns (TaskHost notes
        # their ids, so they are not taken for another writer's). Shielded: a reaction cancelled mid-append (rebalance, shutdown) leaves the append
        # running, and on_revoked waits for it, so the next owner's rebuild sees its result.
        append = asyncio.ensure_future(self.log.append(batch))
        self._appends.add(append)
        append.add_done_callback(self._append_done)
        await asyncio.shield(append)

    def _append_done(self, append: asyncio.Future[list[Recorded]]) -> None:
        self._appends.discard(append)
        if not append.cancelled():
            append.exception()  # retrieved here; whoever still awaits it gets it too

    async def _settle_appends(self) -> None:
        """Wait until every append started is stored or failed (bounded by the timeout)."""
        if self._appends:
            await asyncio.wait(set(self._appends), timeout=self.config.request_timeout_s)

    async def _refused_oversize(self, record: KafkaRecord, source: str) -> bool:
        return await self.dlq.refuse_oversize(record, source)  # see DeadLetters

    async def _dead_letter(self, record: KafkaRecord, source: str, reason: str) -> None:
        await self.dlq.park(record, source, reason)  # see DeadLetters

    async def _retrying(self, operation: Callable[[], Any], *, attempts: int = 0) -> Any:
        """Run a Kafka operation, retrying broker trouble with backoff while not stopping
        (at most ``attempts`` times if given). A record too large is not retried, nor an
        append for a partition this worker's transactions no longer hold (exactly-once)."""
        delay = 0.2
        tried = 0
        while True:
            try:
                return await operation()
            except (RecordTooLargeError, LaneClosedError):
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


def _parts(partitions: Sequence[int]) -> str:
    return "[" + ",".join(str(p) for p in partitions) + "]"
