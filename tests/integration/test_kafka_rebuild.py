"""A task's new owner reads its history from the task's start, not from offset 0, on the
real broker (ListOffsets by timestamp): after many other tasks' events, with producers
whose clocks disagree, and falling back to offset 0 where the start cannot be trusted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from agentledger.schemas import EventBase, GoalSubmitted, TaskCompleted, WorkflowRef, new_event_id
from agentledger.schemas.codec import encode
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog, event_headers
from agentledger.streams.kafka_topics import init_topics
from agentledger.streams.task_start import record_timestamp_ms, task_start_ms

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]

FILLER = 3_000


def goal(task_id: str) -> GoalSubmitted:
    return GoalSubmitted(task_id=task_id, seq=1, goal="g", workflow=WorkflowRef(name="w"))


def done(task_id: str, seq: int) -> TaskCompleted:
    return TaskCompleted(task_id=task_id, seq=seq, result=None)


async def fill(log: KafkaEventLog, count: int) -> None:
    """``count`` events of other tasks, appended in batches as a busy topic would hold."""
    for first in range(0, count, 1_000):
        await log.append([done(f"other-{n}", 1) for n in range(first, min(first + 1_000, count))])


async def produce_raw(
    bootstrap: str, topic: str, events: list[EventBase], timestamp_ms: int | None
) -> None:
    """Produce as another producer would, with the timestamp its clock gives."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic,
                encode(event),
                event.task_id.encode(),
                partition=0,
                timestamp_ms=timestamp_ms,
                headers=event_headers(event),
            )
    finally:
        await producer.stop()


@pytest.fixture
async def log(kafka_broker: str, kafka_prefix: str) -> AsyncIterator[KafkaEventLog]:
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=20) as opened:
        yield opened


async def test_a_new_owner_reads_only_from_the_tasks_start_and_gets_every_event(
    log: KafkaEventLog, kafka_broker: str, kafka_prefix: str
) -> None:
    await fill(log, FILLER)
    await asyncio.sleep(0.01)  # the filler is stamped before the task id is minted
    task_id = new_event_id()
    start = task_start_ms(task_id)
    assert start is not None
    await log.append([goal(task_id)])
    # After the goal: other tasks' events from a producer whose clock is a minute behind
    # (timestamped before the start), and the task's seq 2 from a writer as far behind,
    # which the timestamp rule lifts to the start.
    await produce_raw(kafka_broker, log.topic, [done("late", 1)] * 50, start - 60_000)
    behind = record_timestamp_ms(task_id, now=start - 60_000)
    assert behind == start
    await produce_raw(kafka_broker, log.topic, [done(task_id, 2)], behind)
    await fill(log, 10)

    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix) as owner:  # the new owner
        entries = await owner.read_task(task_id)
        assert [e.event.seq for e in entries if isinstance(e, Recorded)] == [1, 2]
        read = owner.last_task_read
        assert read is not None and not read.fell_back
        assert read.start == FILLER  # the goal's offset: nothing before it was fetched
        assert read.records == 1 + 50 + 1 + 10
        # A task that has not started (a goal's duplicate check) reads nothing.
        assert await owner.read_task(new_event_id()) == []
        assert owner.last_task_read is not None and owner.last_task_read.start is None


async def test_records_of_an_older_writer_and_chosen_ids_fall_back_to_offset_0(
    log: KafkaEventLog, kafka_broker: str, kafka_prefix: str
) -> None:
    task_id = new_event_id()
    start = task_start_ms(task_id)
    assert start is not None
    # An older agentledger on a slow clock wrote the goal without the timestamp rule.
    await produce_raw(kafka_broker, log.topic, [goal(task_id)], start - 5_000)
    await fill(log, 100)
    await log.append([done(task_id, 2), goal("chosen-id")])
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix) as owner:
        assert len(await owner.read_task(task_id)) == 2  # nothing lost
        assert owner.last_task_read is not None and owner.last_task_read.fell_back
        assert owner.last_task_read.start == 0
        assert len(await owner.read_task("chosen-id")) == 1
        assert owner.last_task_read.start == 0 and owner.last_task_read.records == 103
