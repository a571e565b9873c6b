"""Topics that are durable by construction: what `kafka init` creates, what `kafka check`
and a worker refuse (on the real Apache Kafka broker of the session)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agentledger.cli import main
from agentledger.errors import ConfigurationError
from agentledger.streams.kafka_runner import check_topics as worker_check
from agentledger.streams.kafka_topics import (
    DLQ_MAX_RECORD_BYTES,
    MAX_RECORD_BYTES,
    TopicLayout,
    check_topics,
    init_topics,
    topic_settings,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]


@pytest.fixture
async def admin(kafka_broker: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def test_init_creates_topics_kept_forever_with_the_producers_size_limit(
    kafka_broker: str, kafka_prefix: str, admin: AIOKafkaAdminClient
) -> None:
    layout = TopicLayout(kafka_prefix)
    await init_topics(kafka_broker, kafka_prefix, partitions=2)
    settings = await topic_settings(admin, layout.names())
    for topic in (layout.goals, layout.events):
        assert settings[topic] == {
            "retention.ms": "-1",
            "retention.bytes": "-1",
            "cleanup.policy": "delete",
            "max.message.bytes": str(MAX_RECORD_BYTES + 12),
            "message.timestamp.type": "CreateTime",
        }, topic
    assert settings[layout.dlq]["retention.ms"] == "-1"
    assert settings[layout.dlq]["max.message.bytes"] == str(DLQ_MAX_RECORD_BYTES + 12)
    assert await check_topics(kafka_broker, kafka_prefix) == []
    await worker_check(kafka_broker, kafka_prefix)  # a worker accepts them
    code, out, err = await asyncio.to_thread(
        cli, "kafka", "check", "--brokers", kafka_broker, "--prefix", kafka_prefix
    )
    assert code == 0 and "durable" in out and "retention.ms=-1" in out, (out, err)


async def test_topics_on_the_broker_default_retention_are_refused(
    kafka_broker: str, kafka_prefix: str, admin: AIOKafkaAdminClient
) -> None:
    layout = TopicLayout(kafka_prefix)
    # Created by hand as a Kafka tutorial would: the broker's defaults (7 days' retention)
    # for the events topic, compaction for the goals topic.
    await admin.create_topics(
        [
            NewTopic(layout.goals, 1, 1, topic_configs={"cleanup.policy": "compact"}),
            NewTopic(layout.events, 1, 1),
            NewTopic(layout.dlq, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"}),
        ]
    )
    problems = await check_topics(kafka_broker, kafka_prefix)
    assert any(f"{layout.dlq} has message.timestamp.type=LogAppendTime" in p for p in problems)
    assert any(p.startswith(f"{layout.events} has retention.ms=604800000") for p in problems)
    assert any(f"{layout.goals} has cleanup.policy=compact" in p for p in problems)
    with pytest.raises(ConfigurationError, match=r"could lose the event log.*retention\.ms"):
        await worker_check(kafka_broker, kafka_prefix)
    code, out, _ = await asyncio.to_thread(
        cli, "kafka", "check", "--brokers", kafka_broker, "--prefix", kafka_prefix
    )
    assert code == 1 and f"problem: {layout.events} has retention.ms=604800000" in out


async def test_check_fix_makes_existing_topics_durable_and_keeps_their_other_settings(
    kafka_broker: str, kafka_prefix: str, admin: AIOKafkaAdminClient
) -> None:
    """Topics made before `kafka init` set retention (the tansu era) are repaired in place."""
    layout = TopicLayout(kafka_prefix)
    custom = {"segment.bytes": "10485760"}
    await admin.create_topics(
        [NewTopic(t, 1, 1, topic_configs=dict(custom)) for t in layout.names()]
    )
    assert await check_topics(kafka_broker, kafka_prefix)  # broker defaults: 7 days' retention
    code, out, err = await asyncio.to_thread(
        cli, "kafka", "check", "--fix", "--brokers", kafka_broker, "--prefix", kafka_prefix
    )
    assert code == 0, (out, err)
    assert f"changed: {layout.events}: retention.ms 604800000 -> -1" in out
    assert "durable" in out
    assert await check_topics(kafka_broker, kafka_prefix) == []
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, layout.events, None)]
    )
    entries = responses[0].to_object()["resources"][0]["config_entries"]
    assert {e["config_names"]: e["config_value"] for e in entries}["segment.bytes"] == "10485760"
