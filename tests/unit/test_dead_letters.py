"""DeadLetters, a worker's dead-letter sink, over in-memory topics: parked whole, parked as
a reference when oversize, skipped and counted when not even a reference can be parked."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from agentledger.errors import UsageError
from agentledger.streams.kafka_dlq import HEADER_PARKED, HEADER_REASON, DeadLetters
from agentledger.streams.kafka_memory import MemoryProducer, MemoryTopics
from agentledger.streams.kafka_topics import MAX_RECORD_BYTES


async def once(operation: Callable[[], Awaitable[Any]], *, attempts: int = 0) -> Any:
    """The worker's retry, cut to one try (the failure paths are what is tested)."""
    return await operation()


def sink(topics: MemoryTopics) -> DeadLetters:
    return DeadLetters(MemoryProducer(topics), topics.layout.dlq, retrying=once)


async def test_a_record_is_parked_whole_with_its_reason() -> None:
    topics = MemoryTopics("t", partitions=1)
    record = topics.produce(topics.layout.goals, b"{bad", b"k1")
    letters = sink(topics)
    with pytest.raises(UsageError, match="not started"):
        await letters.park(record, topics.layout.goals, "invalid goal")
    await letters.start("memory")
    assert not await letters.refuse_oversize(record, topics.layout.goals)  # small: not refused
    await letters.park(record, topics.layout.goals, "invalid goal:\n  not JSON")
    (parked,) = topics.all(topics.layout.dlq)
    assert (parked.key, parked.value) == (b"k1", b"{bad")
    assert dict(parked.headers)[HEADER_REASON] == b"invalid goal:\n  not JSON"
    assert (letters.parked, letters.skipped) == (1, 0)


async def test_an_oversize_record_is_parked_as_a_reference() -> None:
    topics = MemoryTopics("t", partitions=1)
    big = topics.produce(topics.layout.goals, b"x" * (MAX_RECORD_BYTES + 1), b"k2")
    letters = sink(topics)
    await letters.start("memory")
    assert await letters.refuse_oversize(big, topics.layout.goals)
    (parked,) = topics.all(topics.layout.dlq)
    assert dict(parked.headers)[HEADER_PARKED] == b"reference"
    reference = orjson.loads(parked.value or b"")
    assert reference["size"] == MAX_RECORD_BYTES + 3 and reference["offset"] == big.kafka_offset
    assert reference["reason"].startswith("oversize record")
    assert letters.parked == 1


async def test_a_record_that_cannot_be_parked_is_skipped_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    topics = MemoryTopics("t", partitions=1)
    record = topics.produce(topics.layout.goals, b"{bad", b"k3")
    letters = sink(topics)
    await letters.start("memory")
    topics.available = False
    with caplog.at_level(logging.WARNING, logger="agentledger.streams.kafka_runner"):
        await letters.park(record, topics.layout.goals, "invalid goal")
    assert (letters.parked, letters.skipped) == (0, 1)
    (skipped,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "t.goals[0]@0" in skipped and "invalid goal" in skipped
