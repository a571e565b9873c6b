"""Kafka transactions for an exactly-once worker (``agentledger worker --exactly-once``,
wired in ``kafka_group``; docs/kafka.md "Exactly-once").

One *lane* per input partition the worker holds (each goals partition, each events
partition), each with a transactional producer whose ``transactional_id`` names that
partition (``<topic>-<partition>.worker``). A lane's transaction holds the events appended
for it (a reaction's output goes to the lane of its task's events partition; a goal's
append to the lane of the goals partition it came from, ``LANE``) and the consumed offset
of its partition (``send_offsets_to_transaction`` to the workers' group), and commits them
together: a read_committed reader sees a reaction's output and the consumption of its
cause all at once, or neither.

Fencing. The id belongs to the partition, not the process: whoever is assigned a
partition starts its lane's producer first, which fences the previous holder (its open
transaction is aborted at once, so a SIGKILLed worker holds nothing back; a zombie that
outlived its membership has its next commit refused). A worker whose transaction fails
(fenced, or refused) calls ``on_fatal``; the worker exits (its driver state may believe in
output the log will never show) and the next holder redoes the work from the committed log.

Order within a transaction: the batches are sent, their senders told (so the reactions
finish and acknowledge their records), then the partition's acknowledged offset is added
and the transaction committed. An acknowledgement that comes later rides in the lane's
next transaction; until then a crash redelivers its record, whose reaction the next owner
finds handled in the committed log ("handled means caused") and does not run again.

Example::

    lanes = Transactions(log, config, group, position=lambda tp: ..., on_fatal=...)
    await lanes.open([TopicPartition("P.events", 0)])
    await TransactionalLog(log, lanes).append(events)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from agentledger.errors import EventLogError, LaneClosedError
from agentledger.schemas import EventBase
from agentledger.streams.kafka import KafkaEventLog, log_offset
from agentledger.streams.kafka_clients import transactional_producer
from agentledger.streams.log import LogEntry, Recorded

log = logging.getLogger("agentledger.streams.kafka_runner")  # the worker's one logger

LANE: contextvars.ContextVar[TopicPartition | None] = contextvars.ContextVar(
    "agentledger_eos_lane", default=None
)
"""The input partition whose transaction an append belongs to, when it is not the task's
events partition (a goal appended while consuming a goals partition)."""

_SETTLE_TICKS = 8
"""Loop iterations given to reactions, between their output being sent and the commit, to
finish and acknowledge their records (the chain future -> append -> reaction -> ack)."""


def transactional_id(tp: TopicPartition) -> str:
    """The transactional id of the lane reading ``tp``: stable across workers and restarts."""
    return f"{tp.topic}-{tp.partition}.worker"


class _Lane:
    __slots__ = ("closing", "committed", "pending", "producer", "runner", "tp", "wake")

    def __init__(self, tp: TopicPartition, producer: AIOKafkaProducer) -> None:
        self.tp = tp
        self.producer = producer
        self.pending: list[tuple[Sequence[EventBase], asyncio.Future[list[Recorded]]]] = []
        self.wake = asyncio.Event()
        self.committed: int | None = None
        self.closing = False
        self.runner: asyncio.Task[None] | None = None


class Transactions:
    """The lanes of one worker. ``position(tp)`` gives the offset to commit for ``tp`` (its
    gap-free acknowledged prefix) or None; ``on_fatal(exc)`` is called when a transaction
    fails (the worker must stop)."""

    def __init__(
        self,
        log: KafkaEventLog,
        *,
        group_id: str,
        position: Callable[[TopicPartition], int | None],
        on_fatal: Callable[[BaseException], None],
        client_id: str = "agentledger-worker",
        request_timeout_ms: int = 30_000,
        transaction_timeout_ms: int = 60_000,
    ) -> None:
        self.log = log
        self.group_id = group_id
        self.position = position
        self.on_fatal = on_fatal
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.transaction_timeout_ms = transaction_timeout_ms
        self.lanes: dict[TopicPartition, _Lane] = {}
        self.transactions = 0

    async def open(self, tps: Iterable[TopicPartition]) -> None:
        """Start a lane for each partition, fencing its previous holder before returning."""
        for tp in tps:
            if tp in self.lanes:
                continue
            producer = transactional_producer(
                self.log.bootstrap,
                transactional_id(tp),
                client_id=self.client_id,
                request_timeout_ms=self.request_timeout_ms,
                transaction_timeout_ms=self.transaction_timeout_ms,
            )
            try:
                await producer.start()
                # InitProducerId: fences the previous holder and aborts its open
                # transaction, so the partition's committed data is readable past it.
                await producer.begin_transaction()
                await producer.abort_transaction()
            except KafkaError as exc:
                await producer.stop()
                raise EventLogError(
                    f"cannot start the transactional producer {transactional_id(tp)!r} on "
                    f"{self.log.bootstrap} (does the broker support transactions?): {exc}"
                ) from exc
            lane = _Lane(tp, producer)
            lane.runner = asyncio.ensure_future(self._run(lane))
            self.lanes[tp] = lane

    async def close(self) -> None:
        """Commit what each lane holds (output and offsets), then stop its producer."""
        lanes, self.lanes = self.lanes, {}
        for lane in lanes.values():
            lane.closing = True
            lane.wake.set()
        for lane in lanes.values():
            if lane.runner is not None:
                await asyncio.gather(lane.runner, return_exceptions=True)
            await lane.producer.stop()

    def wake(self) -> None:
        """Commit the acknowledged offsets soon (a transaction of offsets alone, if need be)."""
        for lane in self.lanes.values():
            lane.wake.set()

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        """Append ``events`` in their lane's next transaction; return once it is sent (the
        commit follows; if it fails, ``on_fatal`` is called)."""
        if not events:
            return []
        tp = LANE.get() or TopicPartition(self.log.topic, self.log.partition_for(events[0].task_id))
        lane = self.lanes.get(tp)
        if lane is None or lane.closing:
            raise LaneClosedError(
                f"no transaction open for {tp.topic}[{tp.partition}]: the partition is not "
                "held by this worker (a rebalance?); its next holder redoes the work"
            )
        future: asyncio.Future[list[Recorded]] = asyncio.get_running_loop().create_future()
        lane.pending.append((self.log.guard(events), future))
        lane.wake.set()
        return await future

    async def _run(self, lane: _Lane) -> None:
        while True:
            position = self.position(lane.tp)
            if not lane.pending and (position is None or position == lane.committed):
                if lane.closing:
                    return
                await lane.wake.wait()
                lane.wake.clear()
                continue
            batch, lane.pending = lane.pending, []
            try:
                await self._transaction(lane, batch)
            except Exception as exc:  # the worker stops: see the module docstring
                error = EventLogError(f"transaction of {transactional_id(lane.tp)} failed: {exc}")
                for _, future in batch + lane.pending:
                    if not future.done():
                        future.set_exception(error)
                lane.closing = True
                self.on_fatal(exc)
                return

    async def _transaction(
        self,
        lane: _Lane,
        batch: list[tuple[Sequence[EventBase], asyncio.Future[list[Recorded]]]],
    ) -> None:
        producer = lane.producer
        await producer.begin_transaction()
        sent: list[tuple[asyncio.Future[list[Recorded]], list[tuple[int, int, EventBase]]]] = []
        deliveries: list[Any] = []
        for events, future in batch:
            shares: dict[int, list[EventBase]] = {}
            for event in events:
                shares.setdefault(self.log.partition_for(event.task_id), []).append(event)
            placed: list[tuple[int, int, EventBase]] = []
            for partition, share in shares.items():
                record_batch = self.log._build_batch(producer, share)
                deliveries.append(
                    await producer.send_batch(record_batch, self.log.topic, partition=partition)
                )
                placed.extend((partition, len(deliveries) - 1, e) for e in share)
            sent.append((future, placed))
        metadata = await asyncio.gather(*deliveries)
        for future, placed in sent:
            counts: dict[int, int] = {}
            recorded = []
            for partition, delivery, event in placed:
                index = counts.get(delivery, 0)
                counts[delivery] = index + 1
                offset = log_offset(partition, int(metadata[delivery].offset) + index)
                recorded.append(Recorded(offset, event))  # type: ignore[arg-type]
            if not future.done():
                future.set_result(recorded)
        for _ in range(_SETTLE_TICKS):
            await asyncio.sleep(0)
        position = self.position(lane.tp)
        offsets = position is not None and position != lane.committed
        if offsets:
            await producer.send_offsets_to_transaction({lane.tp: position}, self.group_id)
        await producer.commit_transaction()
        self.transactions += 1
        if offsets:
            lane.committed = position


class TransactionalLog:
    """The worker's log in exactly-once mode: reads from ``log`` (read_committed), appends
    through the lanes of ``transactions``."""

    def __init__(self, log: KafkaEventLog, transactions: Transactions) -> None:
        self.base = log
        self.transactions = transactions

    async def start(self) -> None:
        await self.base.start()

    async def close(self) -> None:
        await self.transactions.close()
        await self.base.close()

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        return await self.transactions.append(events)

    async def read_task(
        self, task_id: str, *, after_seq: int = 0, unstamped: bool = False, whole: bool = False
    ) -> list[LogEntry]:
        return await self.base.read_task(
            task_id, after_seq=after_seq, unstamped=unstamped, whole=whole
        )

    def partition_for(self, task_id: str) -> int:
        return self.base.partition_for(task_id)
