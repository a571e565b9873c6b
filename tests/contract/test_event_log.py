"""The EventLog contract, run against every backend: memory, SQLite and Kafka.

Kafka runs against a real broker (tests/support/kafka_broker.py) on a one-partition events
topic of each test's own, where its offsets are 1, 2, 3, ... like the other backends.
Where Kafka cannot give the same guarantee (one event per ``(task_id, seq)``), its
documented behaviour is tested instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from agentledger.errors import CorruptEventError, SequenceConflictError
from agentledger.schemas import EventBase, GoalSubmitted, TaskCompleted, TaskFailed, WorkflowRef
from agentledger.streams import (
    CorruptRecord,
    EventLog,
    LogEntry,
    MemoryEventLog,
    Recorded,
    SqliteEventLog,
)
from agentledger.streams.kafka import HEADER_SEQ, KafkaEventLog, log_offset
from agentledger.streams.kafka_topics import init_topics

pytest_plugins = ["tests.support.kafka_fixtures"]

WAIT = 10.0  # seconds an expected event may take to show up before the test fails
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Backend:
    """One EventLog implementation plus what the contract needs to poke at its storage."""

    name: str
    enforces_sequence = True
    log: EventLog

    async def plant_corrupt(self, task_id: str, seq: int, data: bytes) -> int:
        """Store ``data`` as if it were the task's event at ``seq``; return its offset."""
        raise NotImplementedError

    async def reopen(self) -> EventLog:
        """Close the log and open the same storage again."""
        raise NotImplementedError

    async def close(self) -> None:
        await self.log.close()


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.memory = MemoryEventLog()
        self.log = self.memory

    async def plant_corrupt(self, task_id: str, seq: int, data: bytes) -> int:
        return self.memory.inject_raw(task_id, seq, data)

    async def reopen(self) -> EventLog:
        return self.log  # nothing outlives the process; the same instance is the storage


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sqlite = SqliteEventLog(path)
        self.log = self.sqlite

    async def plant_corrupt(self, task_id: str, seq: int, data: bytes) -> int:
        return self.sqlite.insert_raw(task_id, seq, data)

    async def reopen(self) -> EventLog:
        await self.sqlite.close()
        self.sqlite = SqliteEventLog(self.path)
        self.log = self.sqlite
        return self.log


class KafkaBackend(Backend):
    name = "kafka"
    enforces_sequence = False

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.kafka = self._new_log()
        self.log = self.kafka

    def _new_log(self) -> KafkaEventLog:
        return KafkaEventLog(self.bootstrap, prefix=self.prefix, fetch_max_wait_ms=50)

    async def start(self) -> None:
        await init_topics(self.bootstrap, self.prefix, partitions=1)
        await self.kafka.start()

    async def plant_corrupt(self, task_id: str, seq: int, data: bytes) -> int:
        # What a foreign or broken producer could write: raw bytes under the task's key.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False
        )
        await producer.start()
        try:
            partition = self.kafka.partition_for(task_id)
            metadata = await producer.send_and_wait(
                self.kafka.topic,
                value=data,
                key=task_id.encode(),
                partition=partition,
                headers=[(HEADER_SEQ, str(seq).encode())],
            )
        finally:
            await producer.stop()
        return log_offset(partition, metadata.offset)

    async def reopen(self) -> EventLog:
        await self.kafka.close()
        self.kafka = self._new_log()
        await self.kafka.start()
        self.log = self.kafka
        return self.log


@pytest.fixture(params=["memory", "sqlite", "kafka"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    made: Backend
    if request.param == "memory":
        made = MemoryBackend()
    elif request.param == "sqlite":
        made = SqliteBackend(tmp_path / "ledger.db")
    else:
        kafka = KafkaBackend(
            request.getfixturevalue("kafka_broker"), request.getfixturevalue("kafka_prefix")
        )
        await kafka.start()
        made = kafka
    try:
        yield made
    finally:
        await made.close()


def goal(task_id: str, seq: int = 1, at: datetime = T0) -> GoalSubmitted:
    return GoalSubmitted(
        task_id=task_id,
        seq=seq,
        goal="write a haiku",
        workflow=WorkflowRef(name="w"),
        occurred_at=at,
    )


def done(task_id: str, seq: int, at: datetime = T0) -> TaskCompleted:
    return TaskCompleted(task_id=task_id, seq=seq, result={"ok": True}, occurred_at=at)


def failed(task_id: str, seq: int, at: datetime = T0) -> TaskFailed:
    return TaskFailed(task_id=task_id, seq=seq, reason="boom", error_kind="tool", occurred_at=at)


def events_of(entries: list[LogEntry]) -> list[EventBase]:
    out: list[EventBase] = []
    for entry in entries:
        assert isinstance(entry, Recorded), f"expected an event, got {entry!r}"
        out.append(entry.event)
    return out


@contextlib.asynccontextmanager
async def following(
    log: EventLog, after: int = 0, *, task_id: str | None = None
) -> AsyncIterator[AsyncIterator[LogEntry]]:
    """``log.follow(...)``, closed on the way out (an async generator's cleanup is aclose)."""
    stream = log.follow(after, task_id=task_id)
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def collect(stream: AsyncIterator[LogEntry], count: int) -> list[LogEntry]:
    """The next ``count`` entries of ``stream``; fails if they take longer than WAIT."""
    got: list[LogEntry] = []
    async with asyncio.timeout(WAIT):
        async for entry in stream:
            got.append(entry)
            if len(got) == count:
                break
    return got


# -- append ------------------------------------------------------------------------------


async def test_append_returns_the_batch_in_order_with_increasing_offsets(backend: Backend) -> None:
    log = backend.log
    assert await log.last_offset() == 0
    batch = [goal("t-a", 1), failed("t-a", 2), done("t-a", 3)]

    first = await log.append(batch)
    second = await log.append([goal("t-b", 1)])

    assert [r.event for r in first] == batch
    offsets = [r.offset for r in first + second]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 4
    assert offsets[0] >= 1
    assert await log.last_offset() == offsets[-1]
    assert await log.append([]) == []


async def test_read_task_returns_its_events_in_seq_order(backend: Backend) -> None:
    log = backend.log
    await log.append([goal("t-a", 1), goal("t-b", 1)])
    await log.append([failed("t-a", 2), failed("t-b", 2)])
    await log.append([done("t-a", 3)])

    a = events_of(await log.read_task("t-a"))
    assert [(e.task_id, e.seq) for e in a] == [("t-a", 1), ("t-a", 2), ("t-a", 3)]
    assert [e.seq for e in events_of(await log.read_task("t-a", after_seq=1))] == [2, 3]
    assert [e.seq for e in events_of(await log.read_task("t-b"))] == [1, 2]
    assert await log.read_task("t-unknown") == []


async def test_read_from_returns_what_follows_an_offset(backend: Backend) -> None:
    log = backend.log
    recorded = await log.append([goal("t-a", 1), goal("t-b", 1), done("t-a", 2), done("t-b", 2)])

    everything = await log.read_from(0)
    assert [e.event_id for e in events_of(everything)] == [r.event.event_id for r in recorded]
    assert [e.offset for e in everything] == [r.offset for r in recorded]

    rest = await log.read_from(recorded[1].offset)
    assert [e.offset for e in rest] == [r.offset for r in recorded[2:]]
    assert [e.offset for e in await log.read_from(0, limit=2)] == [r.offset for r in recorded[:2]]
    assert await log.read_from(recorded[-1].offset) == []


async def test_follow_yields_new_appends_as_they_happen(backend: Backend) -> None:
    log = backend.log
    await log.append([goal("t-old", 1)])
    start = await log.last_offset()

    async with following(log, start) as stream:
        later = asyncio.create_task(collect(stream, 2))
        recorded = await log.append([goal("t-a", 1), done("t-a", 2)])
        got = await later

    assert [e.offset for e in got] == [r.offset for r in recorded]
    assert [e.event_id for e in events_of(got)] == [r.event.event_id for r in recorded]


async def test_follow_of_one_task_skips_the_others(backend: Backend) -> None:
    log = backend.log
    start = await log.last_offset()

    async with following(log, start, task_id="t-a") as stream:
        later = asyncio.create_task(collect(stream, 1))
        await log.append([goal("t-b", 1)])  # stored first, so it would come first if not skipped
        wanted = await log.append([goal("t-a", 1)])
        got = await later

    assert [e.event_id for e in events_of(got)] == [wanted[0].event.event_id]


# -- corrupt records ---------------------------------------------------------------------


async def test_corrupt_record_is_reported_with_its_offset_between_its_neighbours(
    backend: Backend,
) -> None:
    log = backend.log
    before = await log.append([goal("t-a", 1)])
    planted = await backend.plant_corrupt("t-a", 2, b'{"type": "no_such_event"')
    after = await log.append([done("t-a", 3)])

    for entries in (await log.read_task("t-a"), await log.read_from(0)):
        assert [type(e) for e in entries] == [Recorded, CorruptRecord, Recorded]
        assert [e.offset for e in entries] == [before[0].offset, planted, after[0].offset]
        corrupt = entries[1]
        assert isinstance(corrupt, CorruptRecord)
        assert corrupt.task_id == "t-a"
        assert corrupt.seq == 2
        assert corrupt.data == b'{"type": "no_such_event"'
        assert "JSON" in corrupt.reason
        error = corrupt.error()
        assert isinstance(error, CorruptEventError)
        assert error.offset == planted

    async with following(log) as stream:
        followed = await collect(stream, 3)
    assert [type(e) for e in followed] == [Recorded, CorruptRecord, Recorded]


async def test_bytes_that_are_json_but_not_an_event_are_corrupt_too(backend: Backend) -> None:
    log = backend.log
    planted = await backend.plant_corrupt("t-a", 1, b'{"type": "goal_submitted"}')
    recorded = await log.append([done("t-a", 2)])

    entries = await log.read_task("t-a")
    assert [e.offset for e in entries] == [planted, recorded[0].offset]
    assert isinstance(entries[0], CorruptRecord)
    assert "goal_submitted" in entries[0].reason


# -- positions ---------------------------------------------------------------------------


async def test_positions_are_stored_per_consumer_and_survive_reopening(backend: Backend) -> None:
    log = backend.log
    recorded = await log.append([goal("t-a", 1), done("t-a", 2)])
    assert await log.get_position("audit") == 0

    await log.set_position("audit", recorded[1].offset)
    await log.set_position("metrics", recorded[0].offset)
    assert await log.get_position("audit") == recorded[1].offset

    reopened = await backend.reopen()
    assert await reopened.get_position("audit") == recorded[1].offset
    assert await reopened.get_position("metrics") == recorded[0].offset
    assert await reopened.get_position("nobody") == 0

    await reopened.set_position("audit", recorded[0].offset)  # rewinding is allowed
    assert await reopened.get_position("audit") == recorded[0].offset


# -- (task_id, seq) uniqueness -----------------------------------------------------------


async def test_a_repeated_seq_within_one_batch_is_refused(backend: Backend) -> None:
    log = backend.log
    with pytest.raises(SequenceConflictError):
        await log.append([goal("t-a", 1), done("t-a", 1)])
    assert await log.read_task("t-a") == []


async def test_a_taken_seq_is_refused_or_on_kafka_kept_and_deduped_on_read(
    backend: Backend,
) -> None:
    log = backend.log
    first = goal("t-a", 1)
    stored = await log.append([first])

    if backend.enforces_sequence:
        with pytest.raises(SequenceConflictError) as raised:
            await log.append([done("t-a", 2), failed("t-a", 1)])
        assert (raised.value.task_id, raised.value.seq) == ("t-a", 1)
        assert events_of(await log.read_task("t-a")) == [first]  # none of that batch
        return

    # Kafka, documented: the broker cannot refuse a taken seq. Delivery is at least once:
    # the log keeps what was stored and read_task drops repeated event ids.
    retried = await log.append([first])  # a retried send: the same event again
    rival = failed("t-a", 1)  # a second writer of the task: another event, same seq
    clashing = await log.append([rival])
    last = await log.append([done("t-a", 2)])

    assert stored[0].offset < retried[0].offset < clashing[0].offset
    assert len(await log.read_from(0)) == 4
    assert [(e.event_id, e.seq) for e in events_of(await log.read_task("t-a"))] == [
        (first.event_id, 1),
        (rival.event_id, 1),
        (last[0].event.event_id, 2),
    ]
    (summary,) = await log.tasks()
    assert summary.events == 3


# -- tasks -------------------------------------------------------------------------------


async def test_tasks_lists_the_most_recently_active_first(backend: Backend) -> None:
    log = backend.log
    assert await log.tasks() == []
    await log.append([goal("t-a", 1, T0), goal("t-b", 1, T0 + timedelta(seconds=1))])
    await log.append([done("t-a", 2, T0 + timedelta(seconds=2))])
    await log.append([failed("t-c", 1, T0 + timedelta(seconds=3))])

    summaries = await log.tasks()
    assert [(s.task_id, s.events, s.last_type) for s in summaries] == [
        ("t-c", 1, "task_failed"),
        ("t-a", 2, "task_completed"),
        ("t-b", 1, "goal_submitted"),
    ]
    a = summaries[1]
    assert (a.first_at, a.last_at) == (T0, T0 + timedelta(seconds=2))
    assert [s.task_id for s in await log.tasks(limit=1)] == ["t-c"]
