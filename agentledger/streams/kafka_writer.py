"""Appends to one topic, coalesced per partition: while a partition's record batch is in
flight, the appends that arrive meanwhile wait, and then go together as its next batch.

Why: aiokafka keeps one produce request in flight per broker and, per partition, one
batch queued; every further ``send_batch`` to that partition waits for the queued batch to
drain, and every waiter wakes at each drain. A worker driving 50 tasks makes many small
appends at once, so each paid a round trip of its own in turn, and the wake-ups grew with
the square of the appends waiting. Here a partition has one batch in flight at a time,
built from every append queued when it is sent. Nothing waits to fill a batch (no linger):
an append to an idle partition is sent at once, from its caller's task (``append``), so a
lone task's append crosses no hand-off to a writer task; only appends that find their
partition busy wait in its queue, for the batch sent after the one in flight.

Atomicity is kept: an append's records are contiguous in one record batch, which the
broker stores whole or not at all. A batch that fails fails every append in it; each
caller gets the error (appending the same events again is safe: readers dedupe on event
id). Batches of one partition are sent in the order their appends arrived.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from agentledger.errors import EventLogError

RECORD_OVERHEAD = 80
"""Bytes a record may take in a v2 record batch beyond its key, value and header bytes
(length, attribute, offset and timestamp varints, header counts): an upper bound."""
BATCH_OVERHEAD = 61
"""A v2 record batch's header."""


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One record to produce, encoded."""

    key: bytes
    value: bytes
    timestamp_ms: int | None  # None: the producer's clock
    headers: Sequence[tuple[str, bytes]]

    def size_bound(self) -> int:
        """At least the bytes this record takes in a record batch."""
        headers = sum(len(k) + len(v) for k, v in self.headers)
        return len(self.key) + len(self.value) + headers + RECORD_OVERHEAD


class _Append:
    __slots__ = ("done", "records", "size")

    def __init__(self, records: Sequence[OutgoingRecord], done: asyncio.Future[int]) -> None:
        self.records = records
        self.size = sum(r.size_bound() for r in records)
        self.done = done

    def resolve(self, base: int) -> None:
        if not self.done.done():
            self.done.set_result(base)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class PartitionWriter:
    """Sends appends to ``topic`` through ``producer``, one batch in flight per partition.

    ``max_batch_bytes`` is the producer's batch size: appends are put together only while
    their records surely fit (``size_bound``); an append whose records may not fit with
    others goes alone, and one that does not fit alone fails (check before writing).
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, max_batch_bytes: int) -> None:
        self._producer = producer
        self._topic = topic
        self._room = max_batch_bytes - BATCH_OVERHEAD
        self._queues: dict[int, deque[_Append]] = {}
        # A partition with a batch in flight: the task sending its queue, or a future that
        # is done when the batch an ``append`` sent directly is acknowledged (or failed).
        self._flushers: dict[int, asyncio.Future[None]] = {}
        self.batches_sent = 0
        """Record batches sent so far (a figure for tests and benchmarks)."""

    def write(self, partition: int, records: Sequence[OutgoingRecord]) -> asyncio.Future[int]:
        """Queue ``records`` for ``partition``, to go in one record batch (queued at once, so
        ``settle`` covers it); the future is the Kafka offset of the first. It raises what
        the producer raised (a KafkaError) or EventLogError."""
        append = _Append(records, asyncio.get_running_loop().create_future())
        self._queues.setdefault(partition, deque()).append(append)
        if partition not in self._flushers:
            self._flushers[partition] = asyncio.ensure_future(self._flush(partition))
        return append.done

    async def append(self, partition: int, records: Sequence[OutgoingRecord]) -> int:
        """``write`` and wait: the Kafka offset of the first of ``records``. If ``partition``
        has nothing in flight, the batch is sent from here, without a hand-off to a writer
        task (a lone task's append: one loop turn less on every hop); appends arriving
        meanwhile queue behind it, as behind any batch in flight."""
        if partition in self._flushers:
            return await self.write(partition, records)
        loop = asyncio.get_running_loop()
        append = _Append(records, loop.create_future())
        in_flight: asyncio.Future[None] = loop.create_future()
        self._flushers[partition] = in_flight
        try:
            delivery = await self._enqueue(partition, [append])
        except BaseException:
            self._release(partition, in_flight)
            raise
        # Released when the broker answers, even if this caller is cancelled meanwhile: the
        # batch is in the producer's hands, and the next one must not overtake it.
        delivery.add_done_callback(lambda _: self._release(partition, in_flight))
        try:
            metadata = await asyncio.shield(delivery)
        except asyncio.CancelledError:
            if delivery.cancelled():  # the producer was stopped, not this caller
                raise EventLogError(f"the writer of {self._topic} was stopped") from None
            raise
        self.batches_sent += 1
        return int(metadata.offset)

    def _release(self, partition: int, in_flight: asyncio.Future[None]) -> None:
        """The batch ``append`` sent is done: the partition's queue, if any, goes next."""
        if self._queues.get(partition):
            self._flushers[partition] = asyncio.ensure_future(self._flush(partition))
        else:
            del self._flushers[partition]
        in_flight.set_result(None)

    async def settle(self) -> None:
        """Wait until every append queued so far is sent or failed."""
        while self._flushers:
            await asyncio.gather(*self._flushers.values(), return_exceptions=True)

    async def _flush(self, partition: int) -> None:
        queue = self._queues[partition]
        try:
            while queue:
                taken = [queue.popleft()]
                size = taken[0].size
                while queue and size + queue[0].size <= self._room:
                    size += queue[0].size
                    taken.append(queue.popleft())
                try:
                    base = await self._send(partition, taken)
                except asyncio.CancelledError:
                    closed = EventLogError(f"the writer of {self._topic} was stopped")
                    for append in [*taken, *queue]:
                        append.fail(closed)
                    queue.clear()
                    raise
                except Exception as exc:  # each caller gets it; the next batch is tried
                    for append in taken:
                        append.fail(exc)
                    continue
                for append in taken:
                    append.resolve(base)
                    base += len(append.records)
        finally:
            del self._flushers[partition]

    async def _send(self, partition: int, appends: list[_Append]) -> int:
        metadata = await (await self._enqueue(partition, appends))
        self.batches_sent += 1
        return int(metadata.offset)

    async def _enqueue(self, partition: int, appends: list[_Append]) -> asyncio.Future[Any]:
        """Hand ``appends`` to the producer as one record batch; the future is its delivery."""
        records = [record for append in appends for record in append.records]
        batch = record_batch(self._producer, records, self._topic)
        delivery: asyncio.Future[Any] = await self._producer.send_batch(
            batch, self._topic, partition=partition
        )
        return delivery


def record_batch(producer: AIOKafkaProducer, records: Sequence[OutgoingRecord], topic: str) -> Any:
    """``records`` in one record batch of ``producer``, so they are stored atomically; raises
    EventLogError (nothing sent) when they do not fit in one."""
    batch = producer.create_batch()
    for record in records:
        added = batch.append(
            key=record.key,
            value=record.value,
            timestamp=record.timestamp_ms,
            headers=list(record.headers),
        )
        if added is None:
            raise EventLogError(
                f"{len(records)} records for one partition of {topic} do not fit in one "
                "record batch, so they cannot be appended atomically; append them in "
                "smaller batches (nothing was sent)"
            )
    return batch
