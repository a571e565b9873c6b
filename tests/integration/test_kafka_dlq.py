"""Dead letters against a real broker: park, list, re-drive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentledger.errors import ConfigurationError, UsageError
from agentledger.schemas import GoalSubmitted, WorkflowRef
from agentledger.streams import CorruptRecord, Recorded
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord, kafka_position, read_partitions
from agentledger.streams.kafka_dlq import (
    HEADER_REASON,
    DeadLetter,
    dead_letter,
    read_dead_letters,
    redrive,
)
from agentledger.streams.kafka_topics import TopicLayout, init_topics

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]

FAILED_AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
async def layout(kafka_broker: str, kafka_prefix: str) -> TopicLayout:
    await init_topics(kafka_broker, kafka_prefix, partitions=2)
    return TopicLayout(kafka_prefix)


@pytest.fixture
async def producer(kafka_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    made = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all", enable_idempotence=False)
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


async def read_topic(bootstrap: str, topic: str, partition: int) -> list[KafkaRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        records, _ = await read_partitions(consumer, topic, {partition: 0}, wait_ms=50)
    finally:
        await consumer.stop()
    return records


async def test_a_corrupt_event_is_parked_listed_and_redriven_unchanged(
    kafka_broker: str, layout: TopicLayout, producer: AIOKafkaProducer
) -> None:
    async with KafkaEventLog(kafka_broker, prefix=layout.prefix, fetch_max_wait_ms=50) as log:
        partition = log.partition_for("t-1")
        original_headers = [("x-agentledger-seq", b"1"), ("trace", b"abc")]
        sent = await producer.send_and_wait(
            log.topic, b"\xff not json", key=b"t-1", partition=partition, headers=original_headers
        )
        (bad,) = await log.read_task("t-1")
        assert isinstance(bad, CorruptRecord)

        # What a worker does with a record it cannot use: park it with the reason.
        source_partition, next_offset = kafka_position(bad.offset)
        placed = await dead_letter(
            producer,
            layout.dlq,
            bad.data,
            b"t-1",
            bad.reason,
            log.topic,
            source_partition,
            next_offset - 1,
            headers=original_headers,
            failed_at=FAILED_AT,
        )
        assert placed.topic == layout.dlq

        (letter,) = await read_dead_letters(kafka_broker, layout.dlq, fetch_max_wait_ms=50)
        assert letter == DeadLetter(
            partition=placed.partition,
            offset=placed.offset,
            key=b"t-1",
            value=b"\xff not json",
            headers=tuple(original_headers),
            reason=bad.reason,
            source_topic=log.topic,
            source_partition=partition,
            source_offset=sent.offset,
            failed_at=FAILED_AT,
        )

        again = await redrive(producer, letter)

    assert (again.topic, again.partition) == (log.topic, partition)
    assert again.offset > sent.offset
    redriven = (await read_topic(kafka_broker, log.topic, partition))[-1]
    assert (redriven.key, redriven.value) == (b"t-1", b"\xff not json")
    assert redriven.headers == tuple(original_headers)  # no dead-letter headers on it


async def test_a_redriven_event_that_was_stored_after_all_is_read_once(
    kafka_broker: str, layout: TopicLayout, producer: AIOKafkaProducer
) -> None:
    async with KafkaEventLog(kafka_broker, prefix=layout.prefix, fetch_max_wait_ms=50) as log:
        event = GoalSubmitted(task_id="t-2", seq=1, goal="g", workflow=WorkflowRef(name="w"))
        (stored,) = await log.append([event])
        (record,) = await read_topic(kafka_broker, log.topic, log.partition_for("t-2"))
        await dead_letter(
            producer,
            layout.dlq,
            record.value,
            record.key,
            "handler timed out",
            log.topic,
            record.partition,
            record.kafka_offset,
            headers=record.headers,
        )
        (letter,) = await read_dead_letters(kafka_broker, layout.dlq)
        assert letter.failed_at is not None
        assert letter.failed_at.tzinfo is not None

        await redrive(producer, letter)

        entries = await log.read_task("t-2")
        assert len(await log.read_from(0)) == 2
    assert [e.offset for e in entries] == [stored.offset]
    assert isinstance(entries[0], Recorded)


async def test_a_foreign_record_on_the_dlq_is_listed_and_needs_a_target_to_redrive(
    kafka_broker: str, layout: TopicLayout, producer: AIOKafkaProducer
) -> None:
    await producer.send_and_wait(layout.dlq, b"who knows", headers=[(HEADER_REASON, b"manual")])

    (letter,) = await read_dead_letters(kafka_broker, layout.dlq)

    assert letter.reason == "manual"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (None,) * 3
    assert letter.failed_at is None
    with pytest.raises(UsageError, match="source topic"):
        await redrive(producer, letter)
    placed = await redrive(producer, letter, topic=layout.goals)
    assert placed.topic == layout.goals


async def test_listing_a_missing_dlq_is_an_error_and_creates_nothing(
    kafka_broker: str, kafka_prefix: str
) -> None:
    missing = f"{kafka_prefix}.dlq"
    with pytest.raises(ConfigurationError, match="init_topics"):
        await read_dead_letters(kafka_broker, missing)
    with pytest.raises(ConfigurationError, match="init_topics"):
        await read_dead_letters(kafka_broker, missing)  # still missing: not auto-created


async def test_a_dead_letter_needs_something_to_park(producer: AIOKafkaProducer) -> None:
    with pytest.raises(UsageError):
        await dead_letter(producer, "x.dlq", None, None, "empty", "x.events", 0, 0)
