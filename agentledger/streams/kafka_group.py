"""The worker on a bare aiokafka consumer group, on the worker's own event loop: the
default consumer (``agentledger worker``; ``--consumer faust`` runs ``kafka_faust``).

Why: faust runs its Kafka consumer in a thread of its own and hands every batch of records
over to the worker's loop through a method queue and a stream buffer. Measured on this
project's benchmark (``benchmarks/bench_worker_hop.py`` with a trace of each record's
delivery lag), that hand-off is about two thirds of a hop; and the two threads share one
GIL, so a worker busy with 50 tasks hands records over slowly. Here the consumer lives on
the worker's loop and records go straight to ``WorkerCore``
(``benchmarks/bench_kafka.py``, 50 tasks, 2 workers: 1.2-2.6x the steps/s of faust).

The offset rules are ``kafka_faust``'s, kept here for this consumer:

- a record is acknowledged only when ``WorkerCore`` says its reactions finished
  (``when_settled``); a record that raised, or came during a rebalance, is never
  acknowledged;
- each partition commits only its gap-free acknowledged prefix, starting at the offset it
  was assigned at (every ``commit_interval_s``, and when partitions are revoked);
- after a rebalance every partition restarts from its committed offset, so what was not
  acknowledged is delivered again (``WorkerCore`` skips what it already dispatched);
- records are taken only between the end of ``on_partitions_assigned`` and the start of
  the next rebalance: aiokafka sets a new assignment (and may hand out its records) before
  the listener has finished, so records handed out earlier are given back (the consumer
  seeks to them) and a batch a rebalance interrupts is dropped, never skipped.

``--exactly-once`` (``config.exactly_once``): the consumer and the worker's log read
committed records only, every append goes through the transaction lanes of ``kafka_eos``
(opened, fencing the previous holders, before the worker takes a record of a new
assignment), and offsets are committed inside those transactions instead of by
``consumer.commit``. A lane whose transaction fails (fenced: this worker is a zombie)
ends the process with EXIT_BROKER_LOST; the partition's holder redoes the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from agentledger import heap
from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.errors import LaneClosedError
from agentledger.security.logs import install_log_redaction
from agentledger.settings import Settings
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord
from agentledger.streams.kafka_clients import record_consumer
from agentledger.streams.kafka_eos import LANE, TransactionalLog, Transactions
from agentledger.streams.kafka_topics import require_layout
from agentledger.streams.kafka_worker import (
    EXIT_BROKER_LOST,
    WorkerConfig,
    WorkerCore,
    kafka_worker_clients,
    worker_group,
)
from agentledger.streams.write_guard import WriteGuard

log = logging.getLogger("agentledger.streams.kafka_runner")  # one logger for the worker


class _Partition:
    """Offsets of one assigned partition in one generation of the group."""

    __slots__ = ("acked", "committed", "next")

    def __init__(self) -> None:
        self.next: int | None = None  # the lowest offset not yet acknowledged-and-contiguous
        self.committed: int | None = None
        self.acked: set[int] = set()

    def delivered(self, offset: int) -> None:
        if self.next is None:
            self.next = offset

    def ack(self, offset: int) -> None:
        self.acked.add(offset)
        while self.next is not None and self.next in self.acked:
            self.acked.discard(self.next)
            self.next += 1

    def to_commit(self) -> int | None:
        if self.next is None or self.next == self.committed:
            return None
        return self.next


class GroupWorker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Delivers records of the goals and events topics to a ``WorkerCore``."""

    def __init__(
        self, core: WorkerCore, config: WorkerConfig, transactions: Transactions | None = None
    ) -> None:
        self.core = core
        # --exactly-once: offsets are committed in the lanes' transactions (kafka_eos)
        self.transactions = transactions
        self.config = config
        self.layout = core.layout
        heartbeat = config.heartbeat_interval_s or config.session_timeout_s / 5
        rebalance = config.rebalance_timeout_s or config.session_timeout_s + config.revoke_grace_s
        self.consumer = record_consumer(
            config.bootstrap,
            self.layout.goals,
            self.layout.events,
            group_id=worker_group(config.prefix),
            client_id=f"agentledger-worker-{os.getpid()}",
            auto_offset_reset="earliest",
            session_timeout_ms=int(config.session_timeout_s * 1000),
            heartbeat_interval_ms=int(heartbeat * 1000),
            rebalance_timeout_ms=int(rebalance * 1000),
            fetch_max_wait_ms=config.fetch_max_wait_ms,
            isolation_level="read_committed" if transactions else "read_uncommitted",
            request_timeout_ms=int(
                max(config.request_timeout_s, config.session_timeout_s + 1) * 1000
            ),
        )
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.stopping = asyncio.Event()
        # Set while the worker may take records: after on_partitions_assigned has finished
        # (lanes open, core resumed), cleared as soon as a rebalance begins. ``generation``
        # counts the assignments, so a batch handed out before a rebalance is not carried
        # into the next one (whose positions restart from the committed offsets).
        self.ready = asyncio.Event()
        self.generation = 0
        # Goals are handled by a task of their own, as faust's two agents do: a goal's
        # duplicate check reads its partition, and events must not wait behind it.
        self.goals: asyncio.Queue[tuple[int, TopicPartition, KafkaRecord]] = asyncio.Queue()

    # -- rebalances (called by aiokafka's coordinator task, concurrently with getmany) -----

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.ready.clear()
        while not self.goals.empty():  # their owner after the rebalance gets them again
            self.goals.get_nowait()
        await self.core.on_revoked()  # reactions in flight finish (bounded) or are cancelled
        await self.commit()
        if self.transactions is not None:
            await self.transactions.close()  # last transactions in, producers stopped
        self.partitions = {}

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # aiokafka has already set the new assignment and may hand out its records before
        # this returns (opening the lanes takes a while): ``consume`` gives those back.
        self.ready.clear()
        by_topic: dict[str, set[int]] = {self.layout.goals: set(), self.layout.events: set()}
        for tp in assigned:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
            self.partitions[tp] = _Partition()
        if self.transactions is not None:
            # before anything is read: fences the partitions' previous holders
            await self.transactions.open(self.partitions)
        await self.core.on_assigned(by_topic)
        self.generation += 1
        self.ready.set()

    # -- records ---------------------------------------------------------------------------

    async def consume(self) -> None:
        while not self.stopping.is_set():
            await self.wait_ready()
            batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
            if not self.ready.is_set():  # a rebalance began during the fetch
                self._give_back(batches)
                continue
            generation = self.generation
            for tp, messages in batches.items():
                for message in messages:
                    if self.stopping.is_set():
                        return
                    if self.generation != generation or not self.ready.is_set():
                        # A rebalance began while this batch was handled: the rest of it is
                        # delivered again from the committed offsets after the rebalance.
                        break
                    record = KafkaRecord.of(message)
                    if tp.topic == self.layout.goals:
                        self.goals.put_nowait((generation, tp, record))
                    else:
                        await self._event(tp, record)

    def _give_back(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Records handed out while a rebalance is under way (the new assignment is set but
        not taken up yet): the consumer's position has moved past them, so seek it back to
        the first of each partition; they are fetched again once the worker is ready.
        Skipping them instead would lose them: no later rebalance is due to redeliver them."""
        assignment = self.consumer.assignment()
        for tp, messages in batches.items():
            if messages and tp in assignment:
                self.consumer.seek(tp, messages[0].offset)
        if batches:
            log.debug("records fetched during a rebalance given back: %s", sorted(batches))

    async def wait_ready(self) -> None:
        """Until the worker may take records (or is stopping)."""
        while not self.ready.is_set() and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), 0.2)

    async def consume_goals(self) -> None:
        while True:
            generation, tp, record = await self.goals.get()
            state = self.partitions.get(tp)
            if state is None or generation != self.generation:
                continue  # a rebalance came between: the partition's owner gets it again
            state.delivered(record.kafka_offset)
            lane = LANE.set(tp)  # the goal's append rides in its goals partition's transaction
            try:
                await self.core.on_goal(record)
            except LaneClosedError as exc:
                log.info("goal at %s[%d]@%d: %s", tp.topic, tp.partition, record.kafka_offset, exc)
                continue  # the rebalance under way redelivers it
            except Exception:
                log.exception("goal at %s[%d]@%d", tp.topic, tp.partition, record.kafka_offset)
                continue  # not acknowledged: delivered again after a rebalance or restart
            finally:
                LANE.reset(lane)
            state.ack(record.kafka_offset)

    async def _event(self, tp: TopicPartition, record: KafkaRecord) -> None:
        state = self.partitions.get(tp)
        if state is None:
            return  # revoked while the batch was being handled: its owner gets it again
        state.delivered(record.kafka_offset)
        where = f"{tp.topic}[{tp.partition}]@{record.kafka_offset}"
        try:
            reactions = await self.core.on_event(record)
        except Exception:
            log.exception("record at %s", where)
            return  # not acknowledged: delivered again after a rebalance or restart
        if reactions is None:
            # Not processed: a rebalance began (``consume`` stops the batch; the next
            # assignment restarts from the committed offset, which is before this record).
            return
        if reactions:
            offset = record.kafka_offset
            self.core.when_settled(reactions, lambda: state.ack(offset))
        else:
            state.ack(record.kafka_offset)

    def mode(self) -> str:
        """The delivery guarantee, for the health line."""
        if self.transactions is None:
            return "exactly_once=off"
        return f"exactly_once=on transactions={self.transactions.transactions}"

    def position(self, tp: TopicPartition) -> int | None:
        """The offset to commit for ``tp`` (its gap-free acknowledged prefix), if any."""
        state = self.partitions.get(tp)
        return None if state is None else state.next

    async def commit(self) -> None:
        if self.transactions is not None:
            self.transactions.wake()  # the lanes commit offsets in their transactions
            return
        offsets = {}
        for tp, state in self.partitions.items():
            position = state.to_commit()
            if position is not None:
                offsets[tp] = position
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance under way; the next commit tries again
            log.warning("committing offsets failed (%s); retried at the next commit", exc)
            return
        for tp, position in offsets.items():
            if tp in self.partitions:
                self.partitions[tp].committed = position

    async def commit_timer(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(self.config.commit_interval_s)
            await self.commit()


async def _every(seconds: float, what: str, action: Any) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await action()
        except Exception:  # a timer must keep running; the next tick tries again
            log.exception("%s failed", what)


async def _serve(
    workflow: Workflow,
    settings: Settings,
    config: WorkerConfig,
    out: TextIO,
    runtime: Runtime | None,
) -> int:
    from agentledger.agents.runtime import build_runtime

    await require_layout(
        config.bootstrap, config.prefix, request_timeout_s=config.request_timeout_s
    )
    runtime = runtime or build_runtime(workflow, settings)
    heap.settle()  # a long run: what startup built (imports, runtime) leaves the collector
    transactions: Transactions | None = None
    clients = None
    worker: GroupWorker | None = None
    if config.exactly_once:
        guard = WriteGuard(runtime.masker, masked=runtime.workflow.security.masked)
        clients = kafka_worker_clients(config, guard)
        assert isinstance(clients.log, KafkaEventLog)
        transactions = Transactions(
            clients.log,
            group_id=worker_group(config.prefix),
            position=lambda tp: worker.position(tp) if worker is not None else None,
            on_fatal=lambda exc: _transaction_failed(core, exc),
            client_id=f"agentledger-worker-{os.getpid()}",
            request_timeout_ms=int(config.request_timeout_s * 1000),
        )
        clients = dataclasses.replace(clients, log=TransactionalLog(clients.log, transactions))
    core = WorkerCore(runtime, config, clients, out=out)
    await core.start()
    worker = GroupWorker(core, config, transactions)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)

    async def health() -> None:
        core.print_health(extra=worker.mode())

    print(
        f"worker starting: pid={os.getpid()} workflow={workflow.name} "
        f"group={worker_group(config.prefix)} brokers={config.bootstrap} consumer=aiokafka "
        f"{worker.mode()}",
        file=out,
        flush=True,
    )
    timers = [
        asyncio.ensure_future(_every(config.health_interval_s, "health", health)),
        asyncio.ensure_future(
            _every(
                config.approval_check_interval_s,
                "checking approval deadlines",
                core.expire_approvals,
            )
        ),
        asyncio.ensure_future(
            _every(config.broker_probe_interval_s, "probing the broker", core.probe_or_exit)
        ),
        asyncio.ensure_future(worker.commit_timer()),
        # Several goals at once: each waits on a read of its task's partition (the
        # duplicate check) and an append; WorkerCore serializes goals of one task.
        *(asyncio.ensure_future(worker.consume_goals()) for _ in range(config.goal_intake)),
    ]
    worker.consumer.subscribe([core.layout.goals, core.layout.events], listener=worker)
    await worker.consumer.start()
    consuming = asyncio.ensure_future(worker.consume())
    stopped = asyncio.ensure_future(worker.stopping.wait())
    try:
        await asyncio.wait({consuming, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if consuming.done() and not consuming.cancelled() and consuming.exception():
            raise consuming.exception()  # type: ignore[misc]
    finally:
        worker.stopping.set()
        for task in (*timers, consuming, stopped):
            task.cancel()
        await asyncio.gather(*timers, consuming, stopped, return_exceptions=True)
        await core.shutdown()
        await worker.commit()
        await worker.consumer.stop()
    return 0


def _transaction_failed(core: WorkerCore, exc: BaseException) -> None:
    """An exactly-once worker whose transaction failed stops at once: fenced by a newer
    holder of the partition, or refused by the broker, its output is not in the log, and
    its drivers may believe otherwise. The next holder redoes the work from the log."""
    core.print_health("exiting", extra="transaction_failed=true")
    log.error(
        "transaction failed (%s); exiting with code %d: a newer worker holds the partition, "
        "or the broker refused the transaction; the work is redone from the committed log",
        " ".join(f"{type(exc).__name__}: {exc}".split()),
        EXIT_BROKER_LOST,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_BROKER_LOST)


def run_worker(
    workflow: Workflow,
    settings: Settings,
    config: WorkerConfig,
    *,
    out: TextIO | None = None,
    runtime: Runtime | None = None,
) -> int:
    """Run a worker until SIGTERM/SIGINT; return its exit code. Owns the calling thread."""
    install_log_redaction()
    level = "WARNING" if config.log_level == "WARN" else config.log_level
    logging.basicConfig(
        level=level,
        format="[%(asctime)s] [%(process)s] [%(levelname)s]: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(_serve(workflow, settings, config, out or sys.stdout, runtime))
