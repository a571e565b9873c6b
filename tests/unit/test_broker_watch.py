"""BrokerWatch over in-memory topics: a lost broker is reported once as degraded, with
since when and why, and once as recovered; the status field of the health line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentledger.streams.kafka_health import BrokerWatch
from agentledger.streams.kafka_memory import MemoryTopics


class Started:
    def __init__(self) -> None:
        self.started = False

    async def start(self) -> None:
        self.started = True


async def test_a_lost_broker_is_degraded_once_and_recovered_once() -> None:
    topics = MemoryTopics("t", partitions=1)
    lines: list[str] = []
    core = Started()
    watch = BrokerWatch(
        "memory",
        topics.layout.names(),
        list_topics=topics.topic_names,
        start=core.start,
        started=lambda: core.started,
        report=lambda what="health", *, extra="": lines.append(what),
        lost_exit_s=3600,
    )
    assert await watch.probe() and core.started and watch.status() == "status=ok"
    topics.available = False
    before = datetime.now(UTC).replace(microsecond=0)
    assert not await watch.probe()
    assert not await watch.probe()  # still lost: said once
    assert lines == ["degraded"]
    lost_at = watch.degraded_since
    assert lost_at is not None and lost_at >= before
    since = lost_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    assert watch.status().startswith(f'status=degraded since={since} reason="broker memory')
    assert watch.lost_for(lost_at + timedelta(seconds=7)) == 7.0
    await watch.probe_or_exit()  # lost for far less than an hour: the process goes on
    topics.available = True
    assert await watch.probe() and lines == ["degraded", "recovered"]
    assert watch.status() == "status=ok" and watch.lost_for() == 0.0


async def test_a_broker_without_the_layouts_topics_is_degraded() -> None:
    topics = MemoryTopics("t", partitions=1)
    watch = BrokerWatch(
        "memory",
        [*topics.layout.names(), "t.missing"],
        list_topics=topics.topic_names,
        start=Started().start,
        started=lambda: True,
        report=lambda what="health", *, extra="": None,
    )
    assert not await watch.probe()
    assert 'reason="topics missing on memory: t.missing"' in watch.status()
