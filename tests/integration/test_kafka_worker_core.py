"""WorkerCore in-process against the session's Apache Kafka, for what a worker process
would take long to show: a bad record that cannot even be parked (skipped, logged with its
coordinates, counted on the health line; the partition moves on), and a broker that comes
back empty (degraded until the topics are back)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.schemas import GoalSubmitted, WorkflowRef, new_event_id
from agentledger.schemas.codec import encode
from agentledger.settings import Settings
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord, event_headers
from agentledger.streams.kafka_runner import WorkerConfig, WorkerCore
from agentledger.streams.kafka_topics import TopicLayout, init_topics

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]

FIXTURE = Path(__file__).parent.parent / "fixtures" / "deliveries" / "workflow.yaml"


@pytest.fixture
async def core(kafka_broker: str, kafka_prefix: str, tmp_path: Path) -> AsyncIterator[WorkerCore]:
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    settings = Settings(home=tmp_path)
    runtime = build_runtime(load_workflow(FIXTURE, settings=settings), settings)
    config = WorkerConfig(kafka_broker, prefix=kafka_prefix, request_timeout_s=1.0, park_attempts=2)
    worker = WorkerCore(runtime, config)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.shutdown()


async def test_a_record_that_cannot_even_be_parked_is_skipped_and_counted(
    core: WorkerCore, kafka_broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    layout = TopicLayout(core.config.prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
    await admin.start()
    try:  # the dead-letter topic is gone (deleted by hand): nothing can be parked
        await admin.delete_topics([layout.dlq])
    finally:
        await admin.close()
    bad = KafkaRecord(
        partition=0, kafka_offset=7, key=b"t-bad", value=b"{not a goal", headers=(), timestamp_ms=0
    )
    with caplog.at_level(logging.WARNING, logger="agentledger.streams.kafka_runner"):
        await core.on_goal(bad)  # returns: the partition moves on
    assert core.skipped_records == 1 and core.dead_letters == 0
    assert "skipped_records=1" in core.health()
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in caplog.records]
    assert f"record {layout.goals}[0]@7 skipped" in skipped[0]
    assert "invalid goal" in skipped[0]
    assert all("\n" not in r.getMessage() for r in caplog.records)  # one line each


async def test_an_empty_broker_is_degraded_until_the_topics_are_back(
    core: WorkerCore, kafka_broker: str
) -> None:
    """The issue's 'an empty broker came back': the broker answers, but without the
    layout's topics. Health says degraded with the reason, then ok once they are back."""
    out = io.StringIO()
    core.out = out
    layout = TopicLayout(core.config.prefix)
    assert await core.probe_broker() and "status=ok" in core.health()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
    await admin.start()
    try:
        await admin.delete_topics(layout.names())
    finally:
        await admin.close()
    deadline = time.monotonic() + 15
    while await core.probe_broker():  # deletion reaches the metadata a moment later
        assert time.monotonic() < deadline, "the topics never disappeared from the metadata"
        await asyncio.sleep(0.1)
    (line,) = [x for x in out.getvalue().splitlines() if x.startswith("worker degraded:")]
    assert re.search(r'status=degraded since=\S+Z reason="topics missing on [^"]*\.events', line)
    assert core.degraded_since is not None and core.broker_lost_for() >= 0

    await init_topics(kafka_broker, core.config.prefix, partitions=1)
    while not await core.probe_broker():
        assert time.monotonic() < deadline + 15, "the topics never came back"
        await asyncio.sleep(0.1)
    assert "worker recovered:" in out.getvalue() and core.health().endswith("status=ok")
    assert core.degraded_since is None and core.broker_lost_for() == 0


def goal_record(core: WorkerCore, task_id: str, offset: int) -> KafkaRecord:
    ref = WorkflowRef(name=core.workflow.name, digest=core.workflow.digest or None)
    goal = GoalSubmitted(task_id=task_id, seq=1, goal="deliver", workflow=ref)
    return KafkaRecord(
        partition=0,
        kafka_offset=offset,
        key=task_id.encode(),
        value=encode(goal),
        headers=tuple(event_headers(goal)),
        timestamp_ms=0,
    )


async def goals_in_log(core: WorkerCore, task_id: str) -> int:
    entries = await core.log.read_task(task_id)
    return sum(1 for e in entries if isinstance(e, Recorded) and e.event.type == "goal_submitted")


async def test_goals_taken_in_at_once_start_each_task_once(core: WorkerCore) -> None:
    """The consumers take several goals in at once: a goal delivered twice, both copies in
    flight together, still starts its task once; goals of other tasks all start."""
    tasks = [new_event_id() for _ in range(6)]
    records = [goal_record(core, t, n) for n, t in enumerate(tasks)]
    twice = goal_record(core, tasks[0], len(tasks))
    await asyncio.gather(*(core.on_goal(r) for r in [*records, twice]))
    assert core.goals_started == len(tasks)
    assert [await goals_in_log(core, t) for t in tasks] == [1] * len(tasks)


async def test_a_duplicate_goal_of_a_task_hosted_here_is_skipped_without_a_read(
    core: WorkerCore,
) -> None:
    layout = TopicLayout(core.config.prefix)
    await core.on_assigned({layout.goals: {0}, layout.events: {0}})
    task = new_event_id()
    await core.on_goal(goal_record(core, task, 0))
    log = core.log
    assert isinstance(log, KafkaEventLog)
    log.last_task_read = None
    await core.on_goal(goal_record(core, task, 1))  # delivered again: this worker knows it
    assert log.last_task_read is None and core.goals_started == 1
    assert await goals_in_log(core, task) == 1
