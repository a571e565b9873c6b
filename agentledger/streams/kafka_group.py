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
  acknowledged is delivered again (``WorkerCore`` skips what it already dispatched).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.security.logs import install_log_redaction
from agentledger.settings import Settings
from agentledger.streams.kafka import KafkaRecord
from agentledger.streams.kafka_clients import record_consumer
from agentledger.streams.kafka_topics import require_layout
from agentledger.streams.kafka_worker import (
    WorkerConfig,
    WorkerCore,
    worker_group,
)

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

    def __init__(self, core: WorkerCore, config: WorkerConfig) -> None:
        self.core = core
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
            request_timeout_ms=int(
                max(config.request_timeout_s, config.session_timeout_s + 1) * 1000
            ),
        )
        self.partitions: dict[TopicPartition, _Partition] = {}
        self.stopping = asyncio.Event()
        # Goals are handled by a task of their own, as faust's two agents do: a goal's
        # duplicate check reads its partition, and events must not wait behind it.
        self.goals: asyncio.Queue[tuple[TopicPartition, KafkaRecord]] = asyncio.Queue()

    # -- rebalances (called by aiokafka inside getmany) ------------------------------------

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        while not self.goals.empty():  # their owner after the rebalance gets them again
            self.goals.get_nowait()
        await self.core.on_revoked()  # reactions in flight finish (bounded) or are cancelled
        await self.commit()
        self.partitions = {}

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        by_topic: dict[str, set[int]] = {self.layout.goals: set(), self.layout.events: set()}
        for tp in assigned:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
            self.partitions[tp] = _Partition()
        await self.core.on_assigned(by_topic)

    # -- records ---------------------------------------------------------------------------

    async def consume(self) -> None:
        while not self.stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
            for tp, messages in batches.items():
                for message in messages:
                    if self.stopping.is_set():
                        return
                    if tp.topic == self.layout.goals:
                        self.goals.put_nowait((tp, KafkaRecord.of(message)))
                    else:
                        await self._event(tp, KafkaRecord.of(message))

    async def consume_goals(self) -> None:
        while True:
            tp, record = await self.goals.get()
            state = self.partitions.get(tp)
            if state is None:
                continue  # revoked meanwhile: its owner gets it again
            state.delivered(record.kafka_offset)
            try:
                await self.core.on_goal(record)
            except Exception:
                log.exception("goal at %s[%d]@%d", tp.topic, tp.partition, record.kafka_offset)
                continue  # not acknowledged: delivered again after a rebalance or restart
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
            return
        if reactions:
            offset = record.kafka_offset
            self.core.when_settled(reactions, lambda: state.ack(offset))
        else:
            state.ack(record.kafka_offset)

    async def commit(self) -> None:
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
    core = WorkerCore(runtime or build_runtime(workflow, settings), config, out=out)
    await core.start()
    worker = GroupWorker(core, config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)

    async def health() -> None:
        core.print_health()

    print(
        f"worker starting: pid={os.getpid()} workflow={workflow.name} "
        f"group={worker_group(config.prefix)} brokers={config.bootstrap} consumer=aiokafka",
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
