"""The topics of one layout in memory, and a consumer group over them: what ``WorkerCore``
needs of a broker, without one.

``MemoryTopics`` keeps records as Kafka does (partition by murmur2 of the key, offsets per
partition, nothing removed, records timestamped) and hands a worker its clients
(``clients()``): an event log whose ``read_task`` is ``KafkaEventLog``'s
(``kafka.task_entries``, from the task's start time as ``task_start`` finds it), a
dead-letter producer, and the broker probe. ``MemoryGroup`` delivers records to worker
cores the way ``kafka_faust`` does: in partition order, one at a time, acknowledging when
the core says so, committing each partition's gap-free acknowledged prefix, and a member
that takes over a partition starts at its committed offset. So the worker's logic (rebuilds, stamping,
acknowledgements, rebalances, parking) runs in milliseconds in tests, against the same
record format as on Kafka. ``available = False`` makes every call fail as a lost broker.

``streams/memory.py``'s ``MemoryEventLog`` is not enough for this: it refuses a seq stored
twice, which the Kafka log allows (a decision unstamped at seq 0, then stamped by the worker).

Example::

    topics = MemoryTopics("t", partitions=2)
    core = WorkerCore(runtime, WorkerConfig("memory", prefix="t"), topics.clients())
    group = MemoryGroup(topics)
    await group.join(core)
    topics.produce(topics.layout.goals, encode(goal), goal.task_id.encode())
    await group.run_until_idle()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from agentledger.errors import EventLogError, RecordTooLargeError, SequenceConflictError
from agentledger.schemas import EventBase
from agentledger.schemas.codec import encode
from agentledger.streams.kafka import (
    KafkaRecord,
    TaskRead,
    event_headers,
    partition_for_key,
    task_entries,
)
from agentledger.streams.kafka_clients import DLQ_MAX_RECORD_BYTES, MAX_RECORD_BYTES
from agentledger.streams.kafka_dlq import record_size
from agentledger.streams.kafka_topics import DEFAULT_PREFIX, TopicLayout
from agentledger.streams.kafka_worker import WorkerClients, WorkerCore
from agentledger.streams.log import LogEntry, Recorded
from agentledger.streams.task_start import (
    complete,
    first_offset_at,
    now_ms,
    record_timestamp_ms,
    task_start_ms,
)


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a produced record went (the fields of aiokafka's RecordMetadata read here)."""

    topic: str
    partition: int
    offset: int


class MemoryTopics:
    """The goals, events and dead-letter topics of ``prefix``, in memory."""

    def __init__(
        self, prefix: str = DEFAULT_PREFIX, *, partitions: int = 4, dlq_partitions: int = 1
    ) -> None:
        self.layout = TopicLayout(prefix)
        counts = {self.layout.goals: partitions, self.layout.events: partitions}
        counts[self.layout.dlq] = dlq_partitions
        self.records: dict[str, list[list[KafkaRecord]]] = {
            topic: [[] for _ in range(count)] for topic, count in counts.items()
        }
        self.available = True
        self.changed = asyncio.Event()

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> KafkaRecord:
        """Append one record (to the key's partition unless given; timestamped now unless
        given, as Kafka's CreateTime) and return it."""
        self._reachable()
        partitions = self.records[topic]
        if partition is None:
            partition = partition_for_key(key or b"", len(partitions))
        stored = partitions[partition]
        record = KafkaRecord(
            partition=partition,
            kafka_offset=len(stored),
            key=key,
            value=value,
            headers=tuple(headers),
            timestamp_ms=now_ms() if timestamp_ms is None else timestamp_ms,
        )
        stored.append(record)
        self.changed.set()
        return record

    def produce_event(self, topic: str, event: EventBase) -> KafkaRecord:
        """Produce ``event`` as agentledger's producers do (key, value, headers)."""
        return self.produce(topic, encode(event), event.task_id.encode(), event_headers(event))

    def all(self, topic: str) -> list[KafkaRecord]:
        """Every record of ``topic``, partition by partition, in offset order."""
        return [record for partition in self.records[topic] for record in partition]

    def clients(self) -> WorkerClients:
        """A worker core's clients over these topics."""
        return WorkerClients(MemoryTopicLog(self), MemoryProducer(self), self.topic_names)

    async def topic_names(self) -> set[str]:
        self._reachable()
        return set(self.records)

    def _reachable(self) -> None:
        if not self.available:
            raise KafkaConnectionError("the in-memory broker is unavailable")


class MemoryTopicLog:
    """The worker's event log over ``MemoryTopics``' events topic."""

    def __init__(self, topics: MemoryTopics) -> None:
        self.topics = topics
        self.topic = topics.layout.events
        self.last_task_read: TaskRead | None = None

    async def start(self) -> None:
        self._check()

    async def close(self) -> None:
        return None

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        self._check()
        keys = [(e.task_id, e.seq) for e in events]
        for key in keys:
            if keys.count(key) > 1:
                raise SequenceConflictError(*key)
        encoded = [(e, encode(e)) for e in events]
        for event, data in encoded:
            if len(data) > MAX_RECORD_BYTES:
                raise RecordTooLargeError(
                    f"{event.event_type} of task {event.task_id} is {len(data)} bytes, more than "
                    f"the {MAX_RECORD_BYTES} {self.topic} takes"
                )
        out = []
        now = now_ms()
        for event, data in encoded:
            record = self.topics.produce(
                self.topic,
                data,
                event.task_id.encode(),
                event_headers(event),
                timestamp_ms=record_timestamp_ms(event.task_id, now),
            )
            out.append(Recorded(record.offset, event))  # type: ignore[arg-type]
        return out

    def partition_for(self, task_id: str) -> int:
        return partition_for_key(task_id.encode(), len(self.topics.records[self.topic]))

    async def read_task(
        self, task_id: str, *, after_seq: int = 0, unstamped: bool = False, whole: bool = False
    ) -> list[LogEntry]:
        """As ``KafkaEventLog.read_task``: from the first record at or after the task's
        start time, or from 0 when it has none or that history is incomplete."""
        self._check()
        partitions = self.topics.records[self.topic]
        partition = partition_for_key(task_id.encode(), len(partitions))
        records = partitions[partition]
        start = task_start_ms(task_id)
        if whole or start is None:
            first: int | None = 0
        else:
            first = first_offset_at([r.timestamp_ms for r in records], start)
        if first is None:
            self.last_task_read = TaskRead(partition, None, 0, fell_back=False)
            return []
        read = records[first:]
        entries = task_entries(read, task_id, after_seq=after_seq, unstamped=unstamped)
        fell_back = first > 0 and not complete(entries, after_seq)
        if fell_back:
            read = records
            entries = task_entries(read, task_id, after_seq=after_seq, unstamped=unstamped)
        self.last_task_read = TaskRead(partition, 0 if fell_back else first, len(read), fell_back)
        return entries

    def _check(self) -> None:
        if not self.topics.available:
            raise EventLogError("the in-memory broker is unavailable")


class MemoryProducer:
    """A producer over ``MemoryTopics`` that takes records up to the dead-letter limit."""

    def __init__(self, topics: MemoryTopics, max_request_size: int = DLQ_MAX_RECORD_BYTES):
        self.topics = topics
        self.max_request_size = max_request_size

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
    ) -> Placed:
        size = record_size(KafkaRecord(0, 0, key, value, tuple(headers or ()), 0))
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"{size} bytes > {self.max_request_size}")
        record = self.topics.produce(topic, value, key, headers or (), partition=partition)
        return Placed(topic, record.partition, record.kafka_offset)


@dataclass(slots=True)
class _Member:
    core: WorkerCore
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


class MemoryGroup:
    """A consumer group over ``MemoryTopics`` delivering to worker cores, as ``kafka_faust``
    does (see the module docstring). Partitions are shared round-robin among members."""

    def __init__(self, topics: MemoryTopics) -> None:
        self.topics = topics
        self.members: list[_Member] = []
        self.committed: dict[tuple[str, int], int] = {}
        self._acked: dict[tuple[str, int], set[int]] = {}

    async def join(self, core: WorkerCore) -> None:
        """Add a member (a rebalance: everyone gives up everything, then gets a share)."""
        await core.start()
        self.members.append(_Member(core))
        await self.rebalance()

    async def leave(self, core: WorkerCore) -> None:
        """Remove a member (it shuts down), and rebalance the others."""
        member = next(m for m in self.members if m.core is core)
        self.members.remove(member)
        await core.shutdown()
        await self.rebalance()

    async def rebalance(self) -> None:
        for member in self.members:
            await member.core.on_revoked()
        layout = self.topics.layout
        for index, member in enumerate(self.members):
            share: dict[str, set[int]] = {}
            for topic in (layout.goals, layout.events):
                count = len(self.topics.records[topic])
                share[topic] = {p for p in range(count) if p % len(self.members) == index}
            member.positions = {
                (topic, p): self.committed.get((topic, p), 0)
                for topic, parts in share.items()
                for p in parts
            }
            await member.core.on_assigned(share)

    async def deliver(self) -> int:
        """Deliver every record not yet delivered to its member; return how many."""
        delivered = 0
        for member in list(self.members):
            for tp, position in sorted(member.positions.items()):
                records = self.topics.records[tp[0]][tp[1]]
                while member in self.members and position < len(records):
                    await self._one(member.core, tp, records[position])
                    position += 1
                    member.positions[tp] = position
                    delivered += 1
        return delivered

    async def run_until_idle(self, timeout_s: float = 5.0) -> None:
        """Deliver until nothing is left to deliver and no member has work in flight."""
        deadline = time.monotonic() + timeout_s
        while True:
            delivered = await self.deliver()
            if not delivered and all(m.core.idle() for m in self.members):
                await asyncio.sleep(0)
                if not await self.deliver() and all(m.core.idle() for m in self.members):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the group was still busy after {timeout_s} s")
            await asyncio.sleep(0.001)

    async def _one(self, core: WorkerCore, tp: tuple[str, int], record: KafkaRecord) -> None:
        ack = _Ack(self, tp, record.kafka_offset)
        if tp[0] == self.topics.layout.goals:
            await core.on_goal(record)
            ack()
            return
        reactions = await core.on_event(record)
        if reactions is None:
            return
        if reactions:
            core.when_settled(reactions, ack)
        else:
            ack()

    def _commit(self, tp: tuple[str, int], offset: int) -> None:
        acked = self._acked.setdefault(tp, set())
        acked.add(offset)
        position = self.committed.get(tp, 0)
        while position in acked:
            acked.discard(position)
            position += 1
        self.committed[tp] = position


@dataclass(frozen=True, slots=True)
class _Ack:
    group: MemoryGroup
    tp: tuple[str, int]
    offset: int

    def __call__(self) -> None:
        self.group._commit(self.tp, self.offset)
