"""Kafka transactions for exactly-once (``kafka_eos``) on the real broker: a partition's
next holder fences the previous one, whose open transaction is aborted and never visible
to a read_committed reader."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from agentledger.schemas import Event, GoalSubmitted, WorkflowRef
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord, read_partitions
from agentledger.streams.kafka_clients import record_consumer
from agentledger.streams.kafka_eos import TransactionalLog, Transactions
from agentledger.streams.kafka_topics import init_topics
from tests.integration.test_kafka_worker import PARTITIONS

pytestmark = pytest.mark.integration


async def _records(
    bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS
) -> list[KafkaRecord]:
    consumer = record_consumer(
        bootstrap, group_id=None, isolation_level=isolation, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        records, _ = await read_partitions(
            consumer,
            topic,
            dict.fromkeys(range(partitions), 0),
            wait_ms=50,
            committed=isolation == "read_committed",
        )
    finally:
        await consumer.stop()
    return records


def _events(records: list[KafkaRecord]) -> list[Event]:
    out = []
    for record in records:
        entry = record.entry()
        assert isinstance(entry, Recorded), entry
        out.append(entry.event)
    return out


def test_the_next_holder_of_a_partition_fences_the_previous_one(
    kafka_broker: str, kafka_prefix: str
) -> None:
    async def scenario() -> tuple[list[str], list[Event], list[Event]]:
        prefix = kafka_prefix
        await init_topics(kafka_broker, prefix=prefix, partitions=1, replication=1)
        failures: list[str] = []
        tp = TopicPartition(f"{prefix}.events", 0)

        def lanes(log: KafkaEventLog, name: str) -> Transactions:
            return Transactions(
                log,
                group_id=f"{prefix}.workers",
                position=lambda _: None,
                on_fatal=lambda exc: failures.append(f"{name}: {type(exc).__name__}"),
            )

        def goal(task_id: str) -> GoalSubmitted:
            return GoalSubmitted(
                task_id=task_id, seq=1, goal="g", workflow=WorkflowRef(name="deliveries")
            )

        logs = [KafkaEventLog(kafka_broker, prefix=prefix, isolation_level="read_committed")]
        logs.append(KafkaEventLog(kafka_broker, prefix=prefix, isolation_level="read_committed"))
        for log in logs:
            await log.start()
        zombie, successor = lanes(logs[0], "zombie"), lanes(logs[1], "successor")
        await zombie.open([tp])
        # the zombie's append is sent inside its open transaction; then it stalls
        zombie_lane = zombie.lanes[tp]
        await zombie_lane.producer.begin_transaction()
        batch = logs[0]._build_batch(zombie_lane.producer, [goal("t-zombie")])
        await (await zombie_lane.producer.send_batch(batch, tp.topic, partition=0))
        await successor.open([tp])  # fences the zombie: its transaction is aborted
        if zombie_lane.runner is not None:
            zombie_lane.runner.cancel()  # the zombie commits by hand below
        try:
            await zombie_lane.producer.commit_transaction()
        except Exception as exc:
            failures.append(f"zombie commit: {type(exc).__name__}")
        stored = await TransactionalLog(logs[1], successor).append([goal("t-successor")])
        assert stored
        committed = _events(await _records(kafka_broker, tp.topic, "read_committed", 1))
        everything = _events(await _records(kafka_broker, tp.topic, "read_uncommitted", 1))
        await successor.close()
        await zombie_lane.producer.stop()
        for log in logs:
            await log.close()
        return failures, committed, everything

    failures, committed, everything = asyncio.run(scenario())
    assert failures and failures[0].startswith("zombie commit: "), failures
    assert [e.task_id for e in committed] == ["t-successor"]
    assert "t-zombie" in {e.task_id for e in everything}  # stored, aborted, never visible
