"""``read_task`` on started consumers kept between reads (``kafka_clients.ConsumerPool``):
reused, shared by concurrent reads, and replaced after a read that failed, including
across a broker restart."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentledger.errors import EventLogError
from agentledger.schemas import GoalSubmitted, TaskCompleted, WorkflowRef, new_event_id
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_topics import init_topics
from tests.support.kafka_broker import start_broker

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]


def goal(task_id: str) -> GoalSubmitted:
    return GoalSubmitted(task_id=task_id, seq=1, goal="g", workflow=WorkflowRef(name="w"))


async def history(log: KafkaEventLog, task_id: str) -> list[tuple[str, int]]:
    return [
        (e.event.type, e.event.seq) for e in await log.read_task(task_id) if isinstance(e, Recorded)
    ]


@pytest.fixture
async def log(kafka_broker: str, kafka_prefix: str) -> AsyncIterator[KafkaEventLog]:
    await init_topics(kafka_broker, kafka_prefix, partitions=2)
    async with KafkaEventLog(
        kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=50, readers=2
    ) as opened:
        yield opened


async def test_reads_reuse_one_started_consumer(log: KafkaEventLog) -> None:
    tasks = [new_event_id() for _ in range(4)]
    for task in tasks:
        await log.append([goal(task)])
        await log.append([TaskCompleted(task_id=task, seq=2, result=None)])
    for _ in range(3):
        for task in tasks:
            assert await history(log, task) == [("goal_submitted", 1), ("task_completed", 2)]
    assert log.readers.started == 1


async def test_concurrent_reads_each_get_their_own_task(log: KafkaEventLog) -> None:
    tasks = [new_event_id() for _ in range(8)]
    await log.append([goal(task) for task in tasks])
    for n, task in enumerate(tasks):
        await log.append([TaskCompleted(task_id=task, seq=2, result=str(n))])
    reads = await asyncio.gather(*(log.read_task(task) for task in tasks * 2))
    for task, entries in zip(tasks * 2, reads, strict=True):
        events = [e.event for e in entries if isinstance(e, Recorded)]
        assert [(e.task_id, e.seq) for e in events] == [(task, 1), (task, 2)]
        assert isinstance(events[1], TaskCompleted)
        assert events[1].result == str(tasks.index(task))
    assert 1 <= log.readers.started <= 2  # the pool's size bounds the consumers


async def test_a_read_cut_short_leaves_no_broken_consumer_behind(log: KafkaEventLog) -> None:
    task = new_event_id()
    await log.append([goal(task)])
    assert await history(log, task) == [("goal_submitted", 1)]
    started = log.readers.started
    reading = asyncio.ensure_future(log.read_task(task))
    await asyncio.sleep(0)  # the read has borrowed the consumer and is waiting on the broker
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    # The consumer of the cut read was stopped, not lent again: the next read starts one.
    assert await history(log, task) == [("goal_submitted", 1)]
    assert log.readers.started == started + 1


async def test_reads_recover_after_the_broker_restarts(kafka_prefix: str) -> None:
    """A broker restart breaks the pooled consumer's connection: reads fail while it is
    down (EventLogError, bounded by the request timeout) and work again once it is back."""
    with tempfile.TemporaryDirectory(prefix="agentledger-kafka-restart-") as data:
        broker = start_broker(data=Path(data))
        try:
            await init_topics(broker.bootstrap, kafka_prefix, partitions=1)
            task = new_event_id()
            async with KafkaEventLog(
                broker.bootstrap, prefix=kafka_prefix, fetch_max_wait_ms=50, request_timeout_ms=3000
            ) as log:
                await log.append([goal(task)])
                assert await history(log, task) == [("goal_submitted", 1)]
                broker.kill()
                with pytest.raises(EventLogError):
                    await log.read_task(task)
                broker.stop()  # reaps it; the data directory is ours and stays
                broker = start_broker(port=broker.port, data=Path(data), attempts=1)
                await log.append([TaskCompleted(task_id=task, seq=2, result=None)])
                assert await history(log, task) == [("goal_submitted", 1), ("task_completed", 2)]
        finally:
            broker.stop()
