"""Kafka EventLog: events as records of the ``<prefix>.events`` topic (aiokafka).

Every event is one record keyed by its task id, so one task's events sit on one partition,
in the order they were appended. The value is the codec's bytes (the same bytes SQLite
stores); headers repeat ``event-id``, ``seq`` and ``type`` so a record that does not decode
can still be placed.

Offsets. A Kafka offset counts within one partition, and the EventLog needs one integer::

    offset = partition << 40 | (kafka_offset + 1)

On a one-partition topic that is 1, 2, 3, ... exactly as in SQLite. The low 40 bits are
the Kafka offset of the *next* record, which is what Kafka commits as a consumer position,
so an EventLog offset is also a ready-made commit. Within a partition (so within a task)
offsets grow with every append. Across partitions the integer order is partition-major:
``read_from(after)`` pages through partition ``after >> 40`` past ``after`` and then every
higher partition, and ``follow(after)`` follows those partitions live. That is one total
order, but a record appended later to a lower partition sorts *before* ``after``: a single
integer cannot hold a position in N partitions. Use a one-partition events topic where
one global order matters (a CLI tail of everything, a single projection); the distributed
workers consume per partition with consumer-group offsets and do not need it.

Batches. ``append`` sends each partition's share of a batch as one record batch in one
produce request (acks=all), and refuses, before sending anything, a share that does not
fit in ``max_batch_bytes``. A broker stores a record batch whole or not at all, so one
task's batch is atomic. A batch spanning tasks on several partitions is not: without a
transactional producer (not used, by design) some partitions may store their share while
another fails. Appends made at once (a worker's many tasks) share record batches: while a
partition's batch is in flight the next appends queue, and go as one batch
(``kafka_writer``), each append's records contiguous in it.

Duplicates. Without an idempotent producer a retried send can store a batch twice, and
the broker cannot enforce one event per ``(task_id, seq)``. Delivery is at least once:
``read_task`` and ``tasks`` drop repeated event ids; ``read_from`` and ``follow`` return the
log as stored and consumers dedupe on ``event_id`` (the processing contract requires it).
Two different events at one ``(task_id, seq)`` are both kept, in offset order, for the
reader to see: one writer per task is the rule that prevents it.

Unstamped events. Another process that adds to a task it does not drive (``agentledger
approve`` on Kafka) appends its event with ``seq`` 0; the task's worker, its one writer,
appends the same event again (same ``event_id``) at the next seq and acts on it then. So
``read_task`` counts only stamped copies, and of one event id the copy with the highest
seq (a stamp supersedes the seq its producer guessed); ``unstamped=True`` also returns
the events still waiting for their stamp, after the others.

Rebuilds. ``read_task`` does not read the task's partition from offset 0: every record is
timestamped no earlier than its task's start (the time in its UUIDv7 task id), and the
read starts at the broker's first offset at that time (``task_start`` explains why no
record can be missed, and when it falls back to offset 0).

Positions are committed offsets of a consumer group named ``<prefix>.position.<consumer>``
on the events topic: Kafka's own store for "how far has this reader got", visible to
ordinary Kafka tooling as lag, and needing no compaction (which a positions topic would).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from agentledger.errors import ConfigurationError, EventLogError, SequenceConflictError, UsageError
from agentledger.schemas import EventBase
from agentledger.schemas.codec import encode
from agentledger.streams.kafka_clients import (
    ConsumerPool,
    admin_client,
    event_producer,
    record_consumer,
)
from agentledger.streams.kafka_topics import DEFAULT_PREFIX, TopicLayout, partition_counts
from agentledger.streams.kafka_writer import OutgoingRecord, PartitionWriter, record_batch
from agentledger.streams.log import CorruptRecord, LogEntry, Recorded, TaskSummary, decode_entry
from agentledger.streams.task_start import complete, now_ms, record_timestamp_ms, task_start_ms
from agentledger.streams.write_guard import WriteGuard, settings_guard

log = logging.getLogger(__name__)

OFFSET_BITS = 40
_POSITION_MASK = (1 << OFFSET_BITS) - 1

HEADER_EVENT_ID = "x-agentledger-event-id"
HEADER_SEQ = "x-agentledger-seq"
HEADER_TYPE = "x-agentledger-type"


def log_offset(partition: int, kafka_offset: int) -> int:
    """The EventLog offset of the record at ``kafka_offset`` in ``partition``."""
    return (partition << OFFSET_BITS) | (kafka_offset + 1)


def kafka_position(offset: int) -> tuple[int, int]:
    """``(partition, next Kafka offset)`` just past EventLog ``offset`` (0 -> ``(0, 0)``)."""
    if offset < 0:
        raise UsageError(f"log offsets are never negative, got {offset}")
    return offset >> OFFSET_BITS, offset & _POSITION_MASK


@functools.lru_cache(maxsize=16_384)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client, aiokafka, faust) picks.

    Cached: aiokafka's murmur2 is pure Python (~5 us for a task id), and every event of a
    task asks again for the same key; the tasks in flight fit many times over."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def event_headers(event: EventBase) -> list[tuple[str, bytes]]:
    """The headers of ``event``'s record: its id, seq and type, readable without decoding."""
    return [
        (HEADER_EVENT_ID, event.event_id.encode()),
        (HEADER_SEQ, str(event.seq).encode()),
        (HEADER_TYPE, event.event_type.encode()),
    ]


def outgoing(event: EventBase, now: int) -> OutgoingRecord:
    """``event`` as the record that stores it: keyed by its task id, the codec's bytes,
    timestamped never before the task's start (so a rebuild finds it by time, see
    ``task_start``), with the headers."""
    return OutgoingRecord(
        key=event.task_id.encode(),
        value=encode(event),
        timestamp_ms=record_timestamp_ms(event.task_id, now),
        headers=event_headers(event),
    )


@dataclass(frozen=True, slots=True)
class TaskRead:
    """What one ``read_task`` cost: the partition, the offset it read from (None: the task
    had no record at or after its start, nothing was read), the records fetched, and
    whether it fell back to reading the partition from 0 (see ``task_start``)."""

    partition: int
    start: int | None
    records: int
    fell_back: bool


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One record as fetched: where it sits, its key, value and headers (in order)."""

    partition: int
    kafka_offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @classmethod
    def of(cls, message: Any) -> KafkaRecord:
        """From an aiokafka ConsumerRecord."""
        return cls(
            partition=int(message.partition),
            kafka_offset=int(message.offset),
            key=message.key,
            value=message.value,
            headers=tuple((k, v) for k, v in message.headers if v is not None),
            timestamp_ms=int(message.timestamp),
        )

    @property
    def offset(self) -> int:
        """The EventLog offset of this record."""
        return log_offset(self.partition, self.kafka_offset)

    @property
    def task_id(self) -> str:
        return "" if self.key is None else self.key.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` as text, or None."""
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode("utf-8", "replace") if found else None

    def seq(self) -> int | None:
        raw = self.header(HEADER_SEQ)
        return int(raw) if raw is not None and raw.isdigit() else None

    def entry(self) -> LogEntry:
        """The record as an EventLog entry: the event, or a CorruptRecord saying why not."""
        seq = self.seq()
        if self.value is None:
            return CorruptRecord(self.offset, self.task_id, seq, "record has no value", b"")
        entry = decode_entry(self.offset, self.task_id, seq, self.value)
        if isinstance(entry, Recorded) and entry.event.task_id != self.task_id:
            reason = (
                f"record key {self.task_id!r} is not the event's task id "
                f"{entry.event.task_id!r}; the event is on the wrong partition for its task"
            )
            return CorruptRecord(self.offset, self.task_id, seq, reason, self.value)
        return entry


def task_entries(
    records: Iterable[KafkaRecord], task_id: str, *, after_seq: int = 0, unstamped: bool = False
) -> list[LogEntry]:
    """``task_id``'s entries among ``records`` (its partition, in offset order), as
    ``KafkaEventLog.read_task`` returns them: seq order, each event id once, at its highest
    seq; with ``unstamped``, the seq-0 events not stamped yet follow, in offset order."""
    key = task_id.encode()
    placed: dict[str, tuple[int, int, LogEntry]] = {}  # event id -> (seq, offset, entry)
    waiting: dict[str, LogEntry] = {}
    loose: list[tuple[int, int, LogEntry]] = []  # corrupt records, kept where they were
    last_seq = 0
    for record in records:
        if record.key != key:
            continue
        entry = record.entry()
        seq = entry_seq(entry)
        if isinstance(entry, Recorded):
            event_id = entry.event.event_id
            if seq == 0:
                waiting.setdefault(event_id, entry)
                continue
            known = placed.get(event_id)
            if known is not None and known[0] >= entry.event.seq:
                continue  # the same event stored twice by a retried send
            placed[event_id] = (entry.event.seq, record.offset, entry)
            last_seq = max(last_seq, entry.event.seq)
        elif seq is None:
            # Unplaceable bytes: keep them where they were, after the event before them.
            if last_seq >= after_seq:
                loose.append((last_seq, record.offset, entry))
        else:
            if seq > after_seq:
                loose.append((seq, record.offset, entry))
            last_seq = max(last_seq, seq)
    entries = [item for item in placed.values() if item[0] > after_seq] + loose
    entries.sort(key=lambda item: (item[0], item[1]))
    result = [entry for _, _, entry in entries]
    if unstamped:
        result += [entry for event_id, entry in waiting.items() if event_id not in placed]
    return result


async def read_partitions(
    consumer: AIOKafkaConsumer,
    topic: str,
    starts: Mapping[int, int],
    *,
    limit: int | None = None,
    wait_ms: int = 100,
    committed: bool = False,
) -> tuple[list[KafkaRecord], dict[int, int]]:
    """Read each ``partition: start`` of ``topic`` up to its end as first seen.

    ``consumer`` is started, without a group, and owned by the caller (it is reassigned).
    The end is the partition's high watermark as reported by the first fetch answer: the
    ListOffsets answer of some Kafka-protocol brokers is not trusted. Records appended
    after it are left for the next read. With ``limit``, a partition stops after ``limit``
    records. Returns the records (per partition in offset order) and the ends seen.
    Waits as long as the broker takes: bound it with ``deadline(...)``. ``committed``: the
    consumer reads with ``isolation_level="read_committed"``, and the end is the partition's
    last stable offset (records past it, in open transactions, are not returned yet).
    """
    end_of = consumer.last_stable_offset if committed else consumer.highwater
    if not starts:
        return [], {}
    tps = {p: TopicPartition(topic, p) for p in starts}
    consumer.assign(list(tps.values()))
    for p, start in starts.items():
        consumer.seek(tps[p], start)
    out: list[KafkaRecord] = []
    pending = set(tps.values())
    ends: dict[TopicPartition, int] = {}
    taken = dict.fromkeys(pending, 0)
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=wait_ms)
        for tp, messages in fetched.items():
            end = ends.get(tp, end_of(tp))
            for message in messages:
                if end is not None and message.offset >= end:
                    break
                if limit is None or taken[tp] < limit:
                    out.append(KafkaRecord.of(message))
                    taken[tp] += 1
        for tp in list(pending):
            highwater = end_of(tp)
            if highwater is None:
                continue  # no fetch answered for it yet
            end = ends.setdefault(tp, highwater)
            full = limit is not None and taken[tp] >= limit
            if full or await consumer.position(tp) >= end:
                pending.discard(tp)
                consumer.pause(tp)
    return out, {tp.partition: end for tp, end in ends.items()}


@contextlib.asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound a Kafka wait: past ``seconds``, raise EventLogError saying ``what`` timed out."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise EventLogError(
            f"{what} did not finish within {seconds:g} s; is the broker up and reachable?"
        ) from None


class KafkaEventLog:
    """EventLog over the ``<prefix>.events`` topic. Create the topics first (init_topics).

    Example::

        async with KafkaEventLog("127.0.0.1:9092", prefix="agentledger") as log:
            await log.append([event])
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        client_id: str = "agentledger",
        max_batch_bytes: int = 1_048_576,
        fetch_max_wait_ms: int = 100,
        request_timeout_ms: int = 30_000,
        guard: WriteGuard | None = None,
        isolation_level: Literal["read_uncommitted", "read_committed"] = "read_uncommitted",
        readers: int = 4,
    ) -> None:
        self.bootstrap = bootstrap
        # read_committed: only records of committed transactions (the exactly-once worker)
        self.isolation_level = isolation_level
        # Masked before producing: no raw value is ever in the topic (the default vault is
        # the settings' one, AGENTLEDGER_VAULT or HOME/vault.db; runners install their own).
        self.guard = guard if guard is not None else settings_guard()
        self.layout = TopicLayout(prefix)
        self.topic = self.layout.events
        self._client_id = client_id
        self._max_batch_bytes = max_batch_bytes
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._request_timeout_ms = request_timeout_ms
        self._partitions = 0
        self._producer: AIOKafkaProducer | None = None
        self._writer: PartitionWriter  # made with the producer, in start()
        # read_task borrows started consumers: a worker reads a history for every goal.
        self._reader_count = readers
        self.readers = self._reader_pool()
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._groups_lock = asyncio.Lock()
        # Highest end offset seen per partition: where last_offset() starts looking.
        self._known_end: dict[int, int] = {}
        self.last_task_read: TaskRead | None = None
        """Where the last ``read_task`` read from, and how many records it fetched."""

    @property
    def partitions(self) -> int:
        """Partition count of the events topic (known once started)."""
        return self._partitions

    def partition_for(self, task_id: str) -> int:
        """The partition that holds ``task_id``'s events."""
        if not self._partitions:
            raise UsageError("the Kafka event log is not started; call `await log.start()`")
        return partition_for_key(task_id.encode(), self._partitions)

    async def start(self) -> None:
        """Check the events topic exists (it is never auto-created) and connect."""
        if self._producer is not None:
            return
        admin = admin_client(
            self.bootstrap, client_id=self._client_id, request_timeout_ms=self._request_timeout_ms
        )
        try:
            await admin.start()
            counts = await partition_counts(admin, [self.topic])
        except KafkaError as exc:
            raise EventLogError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        finally:
            await admin.close()
        if self.topic not in counts:
            raise ConfigurationError(
                f"topic {self.topic!r} does not exist on {self.bootstrap}; create the topic "
                f"layout first with agentledger.streams.kafka_topics.init_topics "
                f"(prefix {self.layout.prefix!r})"
            )
        self._partitions = counts[self.topic]
        producer = event_producer(
            self.bootstrap,
            client_id=self._client_id,
            max_request_size=self._max_batch_bytes,
            request_timeout_ms=self._request_timeout_ms,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise EventLogError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        self._producer = producer
        self._writer = PartitionWriter(producer, self.topic, self._max_batch_bytes)

    async def __aenter__(self) -> KafkaEventLog:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._producer is not None:
            await self._writer.settle()  # the appends already queued are sent
        producer, self._producer = self._producer, None
        groups, self._groups = self._groups, {}
        await self.readers.close()
        self.readers = self._reader_pool()  # a closed log may be started again
        for consumer in groups.values():
            await consumer.stop()
        if producer is not None:
            await producer.stop()

    # -- writing -------------------------------------------------------------------------

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        """Append ``events``; one task's events go in one record batch (all or none).

        Does not raise SequenceConflictError for a seq already in the log (the broker
        cannot check it), only for a ``(task_id, seq)`` repeated within ``events``.
        """
        producer = self._started()
        if not events:
            return []
        events = self.guard(events)
        seen: set[tuple[str, int]] = set()
        for event in events:
            key = (event.task_id, event.seq)
            if key in seen:
                raise SequenceConflictError(*key)
            seen.add(key)

        shares: dict[int, list[int]] = {}
        for index, event in enumerate(events):
            shares.setdefault(self.partition_for(event.task_id), []).append(index)
        now = now_ms()
        records = {p: [outgoing(events[i], now) for i in idx] for p, idx in shares.items()}
        for p, share in records.items():
            if len(share) > 1 and sum(r.size_bound() for r in share) > self._max_batch_bytes:
                # Maybe too big for one record batch: the exact check, before sending anything.
                self._build_batch(producer, [events[i] for i in shares[p]])

        try:
            if len(records) == 1:  # one task's batch: sent from this task (no gather's task)
                bases = [await self._writer.append(*next(iter(records.items())))]
            else:
                bases = await asyncio.gather(
                    *[self._writer.append(p, share) for p, share in records.items()]
                )
        except KafkaError as exc:
            raise EventLogError(
                f"append of {len(events)} events to {self.topic} failed: {exc}. Some may be "
                "stored; appending the same events again is safe (readers dedupe on event_id)"
            ) from exc

        offsets: dict[int, int] = {}
        for (partition, indexes), base in zip(shares.items(), bases, strict=True):
            for position, index in enumerate(indexes):
                offsets[index] = log_offset(partition, base + position)
            self._saw_end(partition, base + len(indexes))
        return [Recorded(offsets[i], e) for i, e in enumerate(events)]  # type: ignore[arg-type]

    def _build_batch(self, producer: AIOKafkaProducer, events: Sequence[EventBase]) -> Any:
        now = now_ms()
        return record_batch(producer, [outgoing(e, now) for e in events], self.topic)

    # -- reading -------------------------------------------------------------------------

    async def read_task(
        self, task_id: str, *, after_seq: int = 0, unstamped: bool = False, whole: bool = False
    ) -> list[LogEntry]:
        """A task's events with ``seq > after_seq``, in seq order, each event id once.

        An event stored at several seqs counts at the highest (its writer's stamp, see the
        module docstring). With ``unstamped``, events appended with seq 0 and not stamped
        yet follow, in offset order. Read from the first record at or after the task's
        start time (see ``task_start``), or, with ``whole``, from offset 0.
        """
        self._started()
        partition = self.partition_for(task_id)
        async with (
            self.readers.lend() as consumer,
            deadline(self._request_timeout_ms / 1000, f"reading {task_id} from {self.topic}"),
        ):
            first = 0 if whole else await self._task_offset(consumer, partition, task_id)
            if first is None:
                # No record at or after the task's start time: the task has no events.
                self.last_task_read = TaskRead(partition, None, 0, fell_back=False)
                return []
            records, ends = await read_partitions(
                consumer, self.topic, {partition: first}, wait_ms=max(10, self._fetch_max_wait_ms)
            )
        for p, end in ends.items():
            self._saw_end(p, end)
        entries = task_entries(records, task_id, after_seq=after_seq, unstamped=unstamped)
        fell_back = first > 0 and not complete(entries, after_seq)
        if fell_back:
            # Its first records are not where its start time says (written by an older
            # version under skewed clocks, or a topic on LogAppendTime): read from 0.
            log.warning(
                "task %s: history incomplete from offset %d; reading from 0", task_id, first
            )
            records, _ = await self._scan({partition: 0})
            entries = task_entries(records, task_id, after_seq=after_seq, unstamped=unstamped)
        start = 0 if fell_back else first
        self.last_task_read = TaskRead(partition, start, len(records), fell_back)
        return entries

    async def _task_offset(
        self, consumer: AIOKafkaConsumer, partition: int, task_id: str
    ) -> int | None:
        """The offset a read of ``task_id``'s history starts at: the first at or after its
        start time (None: there is none), or 0 if the task id has no start time or the
        broker cannot answer by timestamp (see ``task_start``)."""
        start = task_start_ms(task_id)
        if start is None:
            return 0
        tp = TopicPartition(self.topic, partition)
        # Assigned (and paused, so nothing is fetched yet), the partition's leader is known
        # before the lookup; otherwise the lookup waits out a retry backoff to learn it.
        # Given a position, the consumer does not ask the broker for one (a ListOffsets of
        # its own) while it sits paused.
        consumer.assign([tp])
        consumer.seek(tp, 0)
        consumer.pause(tp)
        try:
            found = await consumer.offsets_for_times({tp: start})
        except KafkaError as exc:
            log.warning("looking up %s by time failed (%s); reading from offset 0", task_id, exc)
            return 0
        answer = found.get(tp)
        return None if answer is None else int(answer.offset)

    async def read_from(self, after: int = 0, *, limit: int | None = None) -> list[LogEntry]:
        """Records with offset > ``after``, in offset order (partition-major, see module)."""
        self._started()
        first, position = kafka_position(after)
        starts = {p: position if p == first else 0 for p in range(first, self._partitions)}
        records, _ = await self._scan(starts, limit=limit)
        records.sort(key=lambda r: r.offset)
        if limit is not None:
            records = records[:limit]
        return [r.entry() for r in records]

    async def follow(
        self, after: int = 0, *, task_id: str | None = None, poll_interval: float = 0.05
    ) -> AsyncGenerator[LogEntry, None]:
        """Yield records past ``after`` as they arrive, forever (cancel or aclose to stop).

        Records of one partition come in offset order; partitions interleave as they
        arrive. With ``task_id``, only that task's partition is read.
        """
        self._started()
        first, position = kafka_position(after)
        chosen: Iterable[int] = range(first, self._partitions)
        if task_id is not None:
            chosen = [p for p in [self.partition_for(task_id)] if p >= first]
        starts = {p: position if p == first else 0 for p in chosen}
        key = None if task_id is None else task_id.encode()
        if not starts:
            await asyncio.Future()  # nothing can ever come after `after`; wait to be cancelled
        async with self._consumer("earliest") as consumer:
            consumer.assign([TopicPartition(self.topic, p) for p in starts])
            for p, start in starts.items():
                consumer.seek(TopicPartition(self.topic, p), start)
            wait_ms = max(1, int(poll_interval * 1000))
            while True:
                fetched = await consumer.getmany(timeout_ms=wait_ms)
                for tp in sorted(fetched, key=lambda t: t.partition):
                    for message in fetched[tp]:
                        record = KafkaRecord.of(message)
                        if record.offset > after and (key is None or record.key == key):
                            yield record.entry()

    async def last_offset(self) -> int:
        """The highest offset in the log (partition-major order); 0 when empty."""
        self._started()
        ends = await self._end_offsets()
        return max((log_offset(p, end - 1) for p, end in ends.items() if end > 0), default=0)

    async def tasks(self, *, limit: int = 100) -> list[TaskSummary]:
        """The most recently active tasks, newest first. Reads the whole events topic."""
        self._started()
        records, _ = await self._scan(dict.fromkeys(range(self._partitions), 0))
        records.sort(key=lambda r: r.offset)
        summaries: dict[str, TaskSummary] = {}
        seen_ids: set[str] = set()
        for record in records:
            entry = record.entry()
            if isinstance(entry, Recorded):
                if entry.event.event_id in seen_ids:
                    continue
                seen_ids.add(entry.event.event_id)
                at = entry.event.occurred_at
                type_ = str(entry.event.type)
            else:
                at = datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)
                type_ = record.header(HEADER_TYPE) or "?"
            task_id = record.task_id
            known = summaries.get(task_id)
            summaries[task_id] = TaskSummary(
                task_id,
                1 if known is None else known.events + 1,
                at if known is None else known.first_at,
                at,
                type_,
            )
        ordered = sorted(summaries.values(), key=lambda s: s.last_at, reverse=True)
        return ordered[:limit]

    # -- positions -----------------------------------------------------------------------

    def position_group(self, consumer: str) -> str:
        """The Kafka consumer group whose committed offsets hold ``consumer``'s position."""
        return f"{self.layout.prefix}.position.{consumer}"

    async def get_position(self, consumer: str) -> int:
        """The furthest committed offset of ``consumer`` (0 when it has none)."""
        self._started()
        group = await self._group(consumer)
        best = 0
        try:
            for p in range(self._partitions):
                committed = await group.committed(TopicPartition(self.topic, p))
                if committed:
                    best = max(best, (p << OFFSET_BITS) | int(committed))
        except KafkaError as exc:
            raise EventLogError(f"reading the position of {consumer!r} failed: {exc}") from exc
        return best

    async def set_position(self, consumer: str, offset: int) -> None:
        """Commit ``offset`` as ``consumer``'s position in the partition it belongs to."""
        self._started()
        partition, position = kafka_position(offset)
        if partition >= self._partitions:
            raise UsageError(
                f"offset {offset} is in partition {partition}, but {self.topic} has "
                f"{self._partitions} partitions; pass an offset this log returned"
            )
        group = await self._group(consumer)
        try:
            await group.commit({TopicPartition(self.topic, partition): position})
        except KafkaError as exc:
            raise EventLogError(f"storing the position of {consumer!r} failed: {exc}") from exc

    async def _group(self, consumer: str) -> AIOKafkaConsumer:
        async with self._groups_lock:
            group = self._groups.get(consumer)
            if group is None:
                group = record_consumer(
                    self.bootstrap,
                    client_id=self._client_id,
                    group_id=self.position_group(consumer),
                    request_timeout_ms=self._request_timeout_ms,
                )
                await group.start()
                tps = [TopicPartition(self.topic, p) for p in range(self._partitions)]
                # Committing needs the partitions assigned; paused, they are never fetched.
                group.assign(tps)
                group.pause(*tps)
                self._groups[consumer] = group
            return group

    # -- internals -----------------------------------------------------------------------

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise UsageError(
                "the Kafka event log is not started; use `async with KafkaEventLog(...)` "
                "or `await log.start()`"
            )
        return self._producer

    def _saw_end(self, partition: int, end: int) -> None:
        self._known_end[partition] = max(self._known_end.get(partition, 0), end)

    def _reader_pool(self) -> ConsumerPool:
        factory = functools.partial(self._new_consumer, "earliest")
        return ConsumerPool(factory, self.bootstrap, size=self._reader_count)

    def _new_consumer(self, reset: Literal["earliest", "latest"]) -> AIOKafkaConsumer:
        return record_consumer(
            self.bootstrap,
            client_id=self._client_id,
            group_id=None,
            auto_offset_reset=reset,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            max_partition_fetch_bytes=max(1_048_576, self._max_batch_bytes),
            request_timeout_ms=self._request_timeout_ms,
            isolation_level=self.isolation_level,
        )

    @contextlib.asynccontextmanager
    async def _consumer(
        self, reset: Literal["earliest", "latest"]
    ) -> AsyncIterator[AIOKafkaConsumer]:
        consumer = self._new_consumer(reset)
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise EventLogError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from exc
        try:
            yield consumer
        finally:
            await consumer.stop()

    async def _scan(
        self, starts: Mapping[int, int], *, limit: int | None = None
    ) -> tuple[list[KafkaRecord], dict[int, int]]:
        """Records from each ``partition: start`` to its current end; and those ends."""
        async with (
            self._consumer("earliest") as consumer,
            deadline(self._request_timeout_ms / 1000, f"reading {self.topic}"),
        ):
            records, ends = await read_partitions(
                consumer,
                self.topic,
                starts,
                limit=limit,
                wait_ms=max(10, self._fetch_max_wait_ms),
                committed=self.isolation_level == "read_committed",
            )
        for partition, end in ends.items():
            self._saw_end(partition, end)
        return records, ends

    async def _end_offsets(self) -> dict[int, int]:
        """Each partition's high watermark, fetched from the highest end already seen."""
        starts = {p: self._known_end.get(p, 0) for p in range(self._partitions)}
        _, ends = await self._scan(starts, limit=0)
        return ends


def entry_seq(entry: LogEntry) -> int | None:
    """An entry's seq: the event's, or the header's for a corrupt record (None if absent)."""
    return entry.event.seq if isinstance(entry, Recorded) else entry.seq
