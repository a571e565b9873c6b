"""Appends made at once share record batches (``kafka_writer``), and each still lands whole,
in order, at the offsets ``append`` returned."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from agentledger.errors import EventLogError
from agentledger.schemas import EventBase, GoalSubmitted, TaskCompleted, WorkflowRef, new_event_id
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_topics import init_topics

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]


def task_batch(task_id: str, size: int = 3) -> list[EventBase]:
    first = GoalSubmitted(task_id=task_id, seq=1, goal="g", workflow=WorkflowRef(name="w"))
    rest = [TaskCompleted(task_id=task_id, seq=n, result=str(n)) for n in range(2, size + 1)]
    return [first, *rest]


@pytest.fixture
async def log(kafka_broker: str, kafka_prefix: str) -> AsyncIterator[KafkaEventLog]:
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=50) as opened:
        yield opened


async def test_appends_at_once_share_batches_and_land_whole_where_they_said(
    log: KafkaEventLog,
) -> None:
    tasks = [new_event_id() for _ in range(40)]
    batches = {t: task_batch(t) for t in tasks}
    results = await asyncio.gather(*(log.append(batches[t]) for t in tasks))
    assert log._writer.batches_sent < len(tasks)  # put together while one was in flight
    by_offset = {
        entry.offset: entry.event.event_id
        for entry in await log.read_from(0)
        if isinstance(entry, Recorded)
    }
    assert len(by_offset) == 3 * len(tasks)  # each event stored once
    for task, recorded in zip(tasks, results, strict=True):
        offsets = [r.offset for r in recorded]
        assert offsets == list(range(offsets[0], offsets[0] + 3))  # contiguous: one batch
        assert [by_offset[o] for o in offsets] == [e.event_id for e in batches[task]]
        events = [e.event for e in await log.read_task(task) if isinstance(e, Recorded)]
        assert [e.event_id for e in events] == [e.event_id for e in batches[task]]


async def test_an_append_too_big_for_a_batch_fails_alone(
    kafka_broker: str, kafka_prefix: str
) -> None:
    """Its neighbours in the queue are sent; it is refused before anything of it is."""
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, max_batch_bytes=3_000) as log:
        big_task, small_task = new_event_id(), new_event_id()
        big = [
            GoalSubmitted(task_id=big_task, seq=n, goal="x" * 1_200, workflow=WorkflowRef(name="w"))
            for n in range(1, 4)
        ]
        small = task_batch(small_task)
        outcome = await asyncio.gather(log.append(big), log.append(small), return_exceptions=True)
        assert isinstance(outcome[0], EventLogError) and "smaller batches" in str(outcome[0])
        assert not isinstance(outcome[1], BaseException)
        assert await log.read_task(big_task) == []
        assert len(await log.read_task(small_task)) == 3


async def test_closing_the_log_sends_the_appends_already_queued(
    kafka_broker: str, kafka_prefix: str
) -> None:
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    tasks = [new_event_id() for _ in range(10)]
    log = KafkaEventLog(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=50)
    await log.start()
    appends = [asyncio.ensure_future(log.append(task_batch(t))) for t in tasks]
    await asyncio.sleep(0)  # queued, not all sent
    await log.close()
    assert [len(r) for r in await asyncio.gather(*appends)] == [3] * len(tasks)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=50) as again:
        assert [len(await again.read_task(t)) for t in tasks] == [3] * len(tasks)


async def test_a_lone_append_is_sent_from_its_caller_and_later_ones_queue_behind_it(
    log: KafkaEventLog,
) -> None:
    """An append to an idle partition starts no writer task; appends that arrive while it is
    in flight wait for it, even if its caller is cancelled, and land after it."""
    await log.append(task_batch(new_event_id(), size=1))  # the producer knows the partition
    first, second = new_event_id(), new_event_id()
    sent = asyncio.ensure_future(log.append(task_batch(first)))
    await asyncio.sleep(0)  # the first batch is in the producer's hands, not acknowledged
    assert not sent.done()
    writers = [
        t
        for t in asyncio.all_tasks()
        if "PartitionWriter" in getattr(t.get_coro(), "__qualname__", "")
    ]
    assert writers == []  # sent from the caller's task: no writer task
    behind = asyncio.ensure_future(log.append(task_batch(second)))
    sent.cancel()  # the caller goes; its batch is still delivered, and first
    recorded = await behind
    with contextlib.suppress(asyncio.CancelledError):
        await sent
    assert log._writer.batches_sent >= 1
    stored = [e for e in await log.read_from(0) if isinstance(e, Recorded)][1:]
    assert [e.event.task_id for e in stored] == [first] * 3 + [second] * 3
    assert [r.offset for r in recorded] == [e.offset for e in stored[3:]]
    again = await log.append(task_batch(new_event_id(), size=1))  # the partition is idle again
    assert again[0].offset == stored[-1].offset + 1
