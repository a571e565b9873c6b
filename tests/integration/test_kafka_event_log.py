"""What only the Kafka backend has: topic layout, partitions, offset encoding, its limits.

The shared EventLog contract (tests/contract/test_event_log.py) covers the rest.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from agentledger.errors import ConfigurationError, EventLogError
from agentledger.schemas import GoalSubmitted, TaskCompleted, WorkflowRef
from agentledger.streams import CorruptRecord, LogEntry, Recorded
from agentledger.streams.kafka import (
    KafkaEventLog,
    kafka_position,
    log_offset,
    partition_for_key,
)
from agentledger.streams.kafka_topics import TopicLayout, init_topics, partition_counts

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]

PARTITIONS = 3


def tasks_on_each_partition(partitions: int = PARTITIONS) -> list[str]:
    """One task id per partition, in partition order."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        task_id = f"task-{n}"
        found.setdefault(partition_for_key(task_id.encode(), partitions), task_id)
        n += 1
    return [found[p] for p in range(partitions)]


def goal(task_id: str, seq: int = 1) -> GoalSubmitted:
    return GoalSubmitted(task_id=task_id, seq=seq, goal="g", workflow=WorkflowRef(name="w"))


def done(task_id: str, seq: int) -> TaskCompleted:
    return TaskCompleted(task_id=task_id, seq=seq, result=None)


async def topics_of(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await partition_counts(admin, list(await admin.list_topics()))
    finally:
        await admin.close()


@pytest.fixture
async def log(kafka_broker: str, kafka_prefix: str) -> AsyncIterator[KafkaEventLog]:
    await init_topics(kafka_broker, kafka_prefix, partitions=PARTITIONS)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=50) as opened:
        yield opened


# -- topics ------------------------------------------------------------------------------


async def test_init_topics_creates_the_layout_and_can_run_again(
    kafka_broker: str, kafka_prefix: str
) -> None:
    names = await init_topics(kafka_broker, kafka_prefix, partitions=2)
    layout = TopicLayout(kafka_prefix)
    assert names == [f"{kafka_prefix}.goals", f"{kafka_prefix}.events", f"{kafka_prefix}.dlq"]
    assert names == layout.names()
    expected = {layout.goals: 2, layout.events: 2, layout.dlq: 1}
    assert {t: n for t, n in (await topics_of(kafka_broker)).items() if t in names} == expected

    assert await init_topics(kafka_broker, kafka_prefix, partitions=2) == names


async def test_init_topics_reports_a_different_partition_count(
    kafka_broker: str, kafka_prefix: str
) -> None:
    await init_topics(kafka_broker, kafka_prefix, partitions=2)
    with pytest.raises(ConfigurationError) as raised:
        await init_topics(kafka_broker, kafka_prefix, partitions=5)
    message = str(raised.value)
    assert f"{kafka_prefix}.events has 2 partitions, expected 5" in message
    assert f"{kafka_prefix}.goals has 2 partitions, expected 5" in message
    assert f"{kafka_prefix}.dlq" not in message


def test_a_prefix_kafka_cannot_name_a_topic_with_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="invalid Kafka topic prefix"):
        TopicLayout("no spaces/here")


async def test_the_log_refuses_missing_topics_and_does_not_create_them(
    kafka_broker: str, kafka_prefix: str
) -> None:
    with pytest.raises(ConfigurationError, match="init_topics"):
        await KafkaEventLog(kafka_broker, prefix=kafka_prefix).start()
    assert f"{kafka_prefix}.events" not in await topics_of(kafka_broker)


async def test_an_unreachable_broker_is_an_event_log_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(EventLogError, match="cannot reach Kafka"):
            await init_topics(f"127.0.0.1:{port}", "x", request_timeout_ms=2_000)


# -- offsets and partitions --------------------------------------------------------------


def test_offsets_encode_partition_and_position() -> None:
    assert log_offset(0, 0) == 1  # one partition: 1, 2, 3, ... like SQLite
    assert log_offset(0, 41) == 42
    assert log_offset(2, 0) == (2 << 40) + 1
    assert kafka_position(log_offset(2, 7)) == (2, 8)  # resume at the next Kafka offset
    assert kafka_position(0) == (0, 0)


async def test_a_task_lives_on_one_partition_and_offsets_say_which(log: KafkaEventLog) -> None:
    tasks = tasks_on_each_partition()
    batch = [goal(t) for t in tasks] + [done(t, 2) for t in tasks]

    recorded = await log.append(batch)

    assert [r.event for r in recorded] == batch
    for r in recorded:
        assert kafka_position(r.offset)[0] == log.partition_for(r.event.task_id)
    for task in tasks:
        entries = await log.read_task(task)
        assert [(e.event.task_id, e.event.seq) for e in entries if isinstance(e, Recorded)] == [
            (task, 1),
            (task, 2),
        ]


async def test_read_from_is_partition_major_and_pages_with_after(log: KafkaEventLog) -> None:
    tasks = tasks_on_each_partition()
    await log.append([goal(t) for t in reversed(tasks)])
    await log.append([done(t, 2) for t in tasks])

    everything = await log.read_from(0)
    offsets = [e.offset for e in everything]
    assert offsets == sorted(offsets)
    assert [kafka_position(o)[0] for o in offsets] == [0, 0, 1, 1, 2, 2]

    paged: list[LogEntry] = []
    after = 0
    while page := await log.read_from(after, limit=2):
        paged += page
        after = page[-1].offset
    assert [e.offset for e in paged] == offsets
    assert await log.last_offset() == offsets[-1]


async def test_follow_from_zero_sees_every_partition(log: KafkaEventLog) -> None:
    tasks = tasks_on_each_partition()
    stream = log.follow(0)
    try:
        later = asyncio.create_task(anext_n(stream, len(tasks)))
        recorded = await log.append([goal(t) for t in tasks])
        got = await later
    finally:
        await stream.aclose()
    assert sorted(e.offset for e in got) == sorted(r.offset for r in recorded)


async def anext_n(stream: AsyncIterator[LogEntry], count: int) -> list[LogEntry]:
    out: list[LogEntry] = []
    async with asyncio.timeout(10):
        while len(out) < count:
            out.append(await anext(stream))
    return out


async def test_positions_are_kept_per_partition(log: KafkaEventLog) -> None:
    first, second, _ = tasks_on_each_partition()
    on_0 = (await log.append([goal(first)]))[0].offset
    on_1 = (await log.append([goal(second)]))[0].offset

    await log.set_position("audit", on_1)
    await log.set_position("audit", on_0)  # another partition: both are kept
    assert await log.get_position("audit") == on_1  # the furthest, in offset order
    assert log.position_group("audit") == f"{log.layout.prefix}.position.audit"


# -- limits and bad records --------------------------------------------------------------


async def test_a_batch_too_big_for_one_record_batch_is_refused_whole(
    kafka_broker: str, kafka_prefix: str
) -> None:
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, max_batch_bytes=2_000) as small:
        big = [
            GoalSubmitted(task_id="t", seq=n, goal="x" * 900, workflow=WorkflowRef(name="w"))
            for n in range(1, 4)
        ]
        with pytest.raises(EventLogError, match="smaller batches"):
            await small.append(big)
        assert await small.read_task("t") == []
        assert len(await small.append(big[:1])) == 1  # one event always fits


async def test_records_without_value_or_under_another_key_are_corrupt(
    log: KafkaEventLog, kafka_broker: str
) -> None:
    task = tasks_on_each_partition()[0]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, enable_idempotence=False)
    await producer.start()
    try:
        partition = log.partition_for(task)
        empty = await producer.send_and_wait(
            log.topic, None, key=task.encode(), partition=partition
        )
        # An event whose task id is not its key (written by something that ignores the keys).
        stray = goal("someone-else")
        misplaced = await producer.send_and_wait(
            log.topic, stray.model_dump_json().encode(), key=task.encode(), partition=partition
        )
    finally:
        await producer.stop()
    recorded = await log.append([goal(task)])

    entries = await log.read_task(task)
    assert [e.offset for e in entries] == [
        log_offset(partition, empty.offset),
        log_offset(partition, misplaced.offset),
        recorded[0].offset,
    ]
    assert isinstance(entries[0], CorruptRecord)
    assert entries[0].reason == "record has no value"
    assert isinstance(entries[1], CorruptRecord)
    assert "not the event's task id" in entries[1].reason
    assert isinstance(entries[2], Recorded)


async def test_read_task_counts_an_event_at_its_writers_stamp(log: KafkaEventLog) -> None:
    """Another process appends an event unstamped (seq 0); the task's writer appends it
    again at the next seq. read_task counts the stamped copy, at its highest seq."""
    task = tasks_on_each_partition()[0]
    first = goal(task)
    request = TaskCompleted(task_id=task, result="from elsewhere")  # seq 0: not stamped
    later = done(task, 2)
    await log.append([first])
    await log.append([request])
    await log.append([later])

    def seqs(entries: list[LogEntry]) -> list[tuple[str, int]]:
        return [(e.event.event_id, e.event.seq) for e in entries if isinstance(e, Recorded)]

    assert seqs(await log.read_task(task)) == [(first.event_id, 1), (later.event_id, 2)]
    assert seqs(await log.read_task(task, unstamped=True)) == [
        (first.event_id, 1),
        (later.event_id, 2),
        (request.event_id, 0),
    ]
    # a producer that guessed seq 2 for it, then the writer's stamp at 3: 3 counts
    await log.append([request.model_copy(update={"seq": 2})])
    await log.append([request.model_copy(update={"seq": 3})])
    stamped = [(first.event_id, 1), (later.event_id, 2), (request.event_id, 3)]
    assert seqs(await log.read_task(task, unstamped=True)) == stamped
    assert seqs(await log.read_task(task, after_seq=2)) == stamped[2:]
