"""The memory projection of the distributed shape: the same fold, fed from Kafka.

Each worker (or a dedicated process) keeps its own index file up to date with the events
topic (``<prefix>.events``). It assigns itself every partition (no consumer group: each
index is a whole copy) and stores each partition's next offset in the index, in the same
transaction as the changes read from it, so a restart resumes exactly where the index is.
Partitions interleave freely; the store's changes commute (newest write wins, erasures
leave tombstones), so the index is the same as the embedded projection of the same events.

    projector = MemoryKafkaProjector(store, embedder, "kafka:9092", prefix="agentledger")
    await projector.run(until_caught_up=True)
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentledger.errors import ConfigurationError
from agentledger.memory.embedders import Embedder
from agentledger.memory.projection import embedded_changes
from agentledger.memory.store import MemoryStore
from agentledger.streams.kafka_topics import TopicLayout, partition_counts
from agentledger.streams.log import Recorded, decode_entry


class MemoryKafkaProjector:
    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        bootstrap: str,
        *,
        prefix: str = "agentledger",
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.bootstrap = bootstrap
        self.topic = TopicLayout(prefix).events
        self.batch_size = batch_size

    async def run(self, *, stop: asyncio.Event | None = None, until_caught_up: bool = False) -> int:
        """Project until ``stop`` is set (or, with ``until_caught_up``, until every partition
        is read to its end). Returns the number of events applied."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            counts = await partition_counts(admin, [self.topic])
        finally:
            await admin.close()
        if self.topic not in counts:
            raise ConfigurationError(
                f"topic {self.topic!r} does not exist on {self.bootstrap}: create the topic "
                "layout first (agentledger kafka init)"
            )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        applied = 0
        try:
            tps = [TopicPartition(self.topic, p) for p in range(counts[self.topic])]
            consumer.assign(tps)
            stored = await asyncio.to_thread(self.store.tracked_positions, f"{self.topic}:")
            for tp in tps:
                position = stored.get(f"{self.topic}:{tp.partition}")
                if position is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, position)
            while stop is None or not stop.is_set():
                polled = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                if polled:
                    applied += await self._apply(polled)
                elif until_caught_up and await _caught_up(consumer, tps):
                    break
        finally:
            await consumer.stop()
        return applied

    async def _apply(self, polled: dict[Any, list[Any]]) -> int:
        events, positions = [], {}
        for tp, messages in polled.items():
            for message in messages:
                entry = decode_entry(message.offset, "", None, message.value or b"")
                if isinstance(entry, Recorded):
                    events.append(entry.event)
            positions[f"{self.topic}:{tp.partition}"] = messages[-1].offset + 1
        changes = await embedded_changes(events, self.embedder)  # the embedded fold
        await asyncio.to_thread(self.store.apply_tracked, changes, positions)
        return len(events)


async def _caught_up(consumer: Any, tps: list[Any]) -> bool:
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True
