"""The memory projection fed from Kafka (a real broker from the shared fixture): the same
index as the embedded projection of the same events, resumed from the positions it stores,
and rebuilt to the same result."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentledger.memory import HashingEmbedder, MemoryStore
from agentledger.memory.kafka_projection import MemoryKafkaProjector
from agentledger.memory.projection import MemoryProjection
from agentledger.schemas import EventBase, GoalSubmitted, TaskCompleted, WorkflowRef
from agentledger.schemas.memory import MemoryErased, MemoryWritten
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_topics import init_topics
from agentledger.streams.sqlite import SqliteEventLog

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
EMBEDDER = HashingEmbedder(64)


def _events() -> tuple[list[EventBase], list[EventBase]]:
    """Three tasks (spread over partitions) writing memories, then a rewrite and erasures."""
    first: list[EventBase] = []
    for n, (task, key, text) in enumerate(
        [
            ("task-a", "refunds", "Refunds within 30 days."),
            ("task-b", "shipping", "Shipping takes five days."),
            ("task-c", "warranty", "Two-year warranty on appliances."),
        ]
    ):
        at = T0 + timedelta(seconds=n)
        first += [
            GoalSubmitted(
                task_id=task,
                seq=1,
                goal=f"learn {key}",
                workflow=WorkflowRef(name="kb"),
                inputs={"user": task},
                occurred_at=at,
            ),
            MemoryWritten(task_id=task, seq=2, namespace="kb", key=key, text=text, occurred_at=at),
            TaskCompleted(task_id=task, seq=3, result="ok", occurred_at=at),
        ]
    later = T0 + timedelta(minutes=1)
    second: list[EventBase] = [
        MemoryWritten(
            task_id="task-b",
            seq=4,
            namespace="kb",
            key="shipping",
            text="Express shipping takes one day.",
            occurred_at=later,
        ),
        MemoryErased(
            task_id="memory-erasures",
            seq=1,
            namespace="kb",
            key="refunds",
            occurred_at=later + timedelta(seconds=1),
        ),
    ]
    return first, second


def _snapshot(store: MemoryStore) -> tuple[list, list, list]:
    items = [(i.namespace, i.key, i.text) for i in store.items()]
    hits = [
        (h.key, round(h.score or 0, 5))
        for h in store.search("kb", EMBEDDER.vector("shipping days"), 5)
    ]
    episodes = [(e["task_id"], e["status"]) for e in store.episodes(limit=10)]
    return items, hits, episodes


async def test_the_kafka_fed_index_equals_the_embedded_one(
    kafka_broker: str, kafka_prefix: str, tmp_path: Path
):
    await init_topics(kafka_broker, kafka_prefix, partitions=3)
    first, second = _events()
    store = MemoryStore(tmp_path / "kafka.db", identity=EMBEDDER.identity, dimensions=64)
    projector = MemoryKafkaProjector(store, EMBEDDER, kafka_broker, prefix=kafka_prefix)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix) as log:
        await log.append(first)
        assert await projector.run(until_caught_up=True) == len(first)
        await log.append(second)
        # resumed from the positions stored in the index: only the new events are read
        assert await projector.run(until_caught_up=True) == len(second)

    sqlite_log = SqliteEventLog(tmp_path / "ledger.db")
    await sqlite_log.append(first)
    await sqlite_log.append(second)
    embedded = MemoryStore(tmp_path / "embedded.db", identity=EMBEDDER.identity, dimensions=64)
    await MemoryProjection(sqlite_log, embedded, EMBEDDER).catch_up()
    await sqlite_log.close()

    items, hits, episodes = _snapshot(store)
    assert items == [
        ("kb", "shipping", "Express shipping takes one day."),
        ("kb", "warranty", "Two-year warranty on appliances."),
    ]
    assert (items, hits, episodes) == _snapshot(embedded)
    assert hits[0][0] == "shipping"

    rebuilt = MemoryStore.recreate(tmp_path / "kafka.db", identity=EMBEDDER.identity, dimensions=64)
    store.close()
    again = MemoryKafkaProjector(rebuilt, EMBEDDER, kafka_broker, prefix=kafka_prefix)
    assert await again.run(until_caught_up=True) == len(first) + len(second)
    assert _snapshot(rebuilt) == (items, hits, episodes)
    rebuilt.close()
    embedded.close()
