"""Finding a task's history by its start time (``task_start``), in memory: the timestamp
rule, the broker's lookup as ``kafka_memory`` models it, the fallbacks, and a new owner's
rebuild reading from near the task's start after many other tasks' events."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.schemas import GoalSubmitted, TaskCompleted, WorkflowRef, new_event_id
from agentledger.schemas.codec import encode
from agentledger.settings import Settings
from agentledger.streams.kafka import event_headers
from agentledger.streams.kafka_dlq import HEADER_REASON
from agentledger.streams.kafka_memory import MemoryGroup, MemoryTopicLog, MemoryTopics
from agentledger.streams.kafka_runner import WorkerConfig, WorkerCore
from agentledger.streams.log import Recorded
from agentledger.streams.task_start import (
    MAX_START_AHEAD_MS,
    complete,
    first_offset_at,
    now_ms,
    record_timestamp_ms,
    start_ahead_ms,
    task_start_ms,
)
from agentledger.testing import task_events
from tests.support.runners import ROOT

PIPELINE = ROOT / "examples" / "pipeline" / "workflow.yaml"
FILLER = 500


def uuid7_at(ms: int) -> str:
    """A UUIDv7 task id minted at ``ms`` (as a submitter whose clock reads ``ms`` makes)."""
    value = (ms << 80) | (0x7 << 76) | (0b10 << 62) | (uuid.uuid4().int & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def goal(task_id: str, seq: int = 1) -> GoalSubmitted:
    return GoalSubmitted(task_id=task_id, seq=seq, goal="g", workflow=WorkflowRef(name="w"))


def done(task_id: str, seq: int) -> TaskCompleted:
    return TaskCompleted(task_id=task_id, seq=seq, result=None)


def fill(topics: MemoryTopics, count: int, *, timestamp_ms: int) -> None:
    """``count`` events of other tasks on partition 0, stamped ``timestamp_ms``."""
    for n in range(count):
        event = done(f"other-{n}", 1)
        topics.produce(
            topics.layout.events,
            encode(event),
            event.task_id.encode(),
            event_headers(event),
            partition=0,
            timestamp_ms=timestamp_ms,
        )


def test_a_uuid7_task_id_carries_its_start_and_other_ids_none() -> None:
    before = now_ms()
    start = task_start_ms(new_event_id())
    assert start is not None and before <= start <= now_ms()
    assert task_start_ms(uuid7_at(1_700_000_000_000)) == 1_700_000_000_000
    for other in ("task-1", str(uuid.uuid4()), "not-a-uuid-but-36-characters-long!!", ""):
        assert task_start_ms(other) is None
    assert record_timestamp_ms("task-1") is None  # the producer's clock decides


def test_a_record_is_never_timestamped_before_its_task_started() -> None:
    task_id = uuid7_at(1_700_000_000_000)
    # A producer whose clock is an hour behind the submitter's still stamps the start.
    assert record_timestamp_ms(task_id, now=1_700_000_000_000 - 3_600_000) == 1_700_000_000_000
    assert record_timestamp_ms(task_id, now=1_700_000_000_500) == 1_700_000_000_500
    assert start_ahead_ms(task_id, now=1_700_000_000_000 - 42) == 42
    assert start_ahead_ms(task_id, now=1_700_000_000_001) == 0


def test_the_lookup_answers_as_the_broker_does() -> None:
    # Timestamps in a partition need not grow (CreateTime): the earliest offset at or after.
    assert first_offset_at([5, 9, 3, 10, 7], 7) == 1
    assert first_offset_at([5, 9, 3, 10, 7], 10) == 3
    assert first_offset_at([5, 9, 3], 11) is None
    assert first_offset_at([], 1) is None


def test_a_history_is_complete_when_its_seqs_run_without_a_gap() -> None:
    def recorded(*seqs: int) -> list[Recorded]:
        return [Recorded(n, done("t", s) if s else goal("t", 0)) for n, s in enumerate(seqs)]

    assert complete(recorded(1, 2, 3))
    assert complete(recorded(1, 2, 0))  # an unstamped decision does not count
    assert complete([])
    assert not complete(recorded(2, 3))  # its goal was not found from the start offset
    assert not complete(recorded(1, 3))
    assert complete(recorded(4, 5), after_seq=3)
    assert not complete(recorded(5), after_seq=3)


async def test_a_task_is_read_from_its_start_not_from_offset_0() -> None:
    topics = MemoryTopics("t", partitions=1)
    log = MemoryTopicLog(topics)
    fill(topics, FILLER, timestamp_ms=now_ms() - 60_000)
    task_id = new_event_id()
    await log.append([goal(task_id)])
    fill(topics, 100, timestamp_ms=now_ms() - 60_000)  # a skewed producer, after the start
    await log.append([done(task_id, 2)])
    entries = await log.read_task(task_id)
    assert [e.event.seq for e in entries if isinstance(e, Recorded)] == [1, 2]
    read = log.last_task_read
    assert read is not None and read.start == FILLER and not read.fell_back
    assert read.records == 102  # its goal, the 100 records after it, its last event


async def test_a_writer_behind_the_submitters_clock_is_still_found() -> None:
    topics = MemoryTopics("t", partitions=1)
    log = MemoryTopicLog(topics)
    start = now_ms()
    task_id = uuid7_at(start + 120_000)  # the submitter's clock is 2 minutes ahead
    fill(topics, FILLER, timestamp_ms=start)
    await log.append([goal(task_id), done(task_id, 2)])  # this writer's clock is behind
    assert [r.timestamp_ms for r in topics.records[topics.layout.events][0][-2:]] == [
        start + 120_000
    ] * 2
    assert len(await log.read_task(task_id)) == 2
    assert log.last_task_read is not None and log.last_task_read.start == FILLER


async def test_an_old_writers_records_and_other_ids_fall_back_to_offset_0() -> None:
    topics = MemoryTopics("t", partitions=1)
    log = MemoryTopicLog(topics)
    task_id = new_event_id()
    # An older agentledger with a slow clock wrote the goal before the task's start time.
    topics.produce(
        topics.layout.events,
        encode(goal(task_id)),
        task_id.encode(),
        event_headers(goal(task_id)),
        timestamp_ms=task_start_ms(task_id) - 5_000,  # type: ignore[operator]
    )
    fill(topics, FILLER, timestamp_ms=now_ms() - 60_000)
    await log.append([done(task_id, 2)])
    assert len(await log.read_task(task_id)) == 2  # nothing lost
    assert log.last_task_read is not None and log.last_task_read.fell_back
    await log.append([goal("chosen-id")])
    assert len(await log.read_task("chosen-id")) == 1
    assert log.last_task_read.start == 0 and log.last_task_read.records == FILLER + 3


async def test_a_new_task_costs_no_read_at_all() -> None:
    topics = MemoryTopics("t", partitions=1)
    log = MemoryTopicLog(topics)
    fill(topics, FILLER, timestamp_ms=now_ms() - 1)
    assert await log.read_task(uuid7_at(now_ms() + 1_000)) == []
    assert log.last_task_read is not None and log.last_task_read.start is None


async def test_a_new_owner_rebuilds_a_task_from_near_its_start(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    workflow = load_workflow(PIPELINE, settings=settings)
    topics = MemoryTopics("t", partitions=1)
    group = MemoryGroup(topics)
    fill(topics, FILLER, timestamp_ms=now_ms() - 60_000)
    group.committed[(topics.layout.events, 0)] = FILLER  # processed by an earlier owner

    def worker() -> WorkerCore:
        config = WorkerConfig("memory", prefix="t")
        return WorkerCore(
            build_runtime(workflow, settings), config, topics.clients(), out=io.StringIO()
        )

    first = worker()
    await group.join(first)
    task_id = new_event_id()
    ref = WorkflowRef(name=workflow.name, digest=workflow.digest or None)
    topics.produce_event(
        topics.layout.goals,
        GoalSubmitted(task_id=task_id, seq=1, goal="taxi 23.50 eur", workflow=ref),
    )
    await group.deliver()  # the goal becomes seq 1
    await group.deliver()  # its first reactions start
    await group.leave(first)  # the owner goes; its unacknowledged records stay
    second = worker()
    await group.join(second)
    await group.run_until_idle()
    events = await task_events(topics.clients().log, task_id)  # type: ignore[arg-type]
    assert events[-1].type == "task_completed"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    read = second.log.last_task_read  # type: ignore[attr-defined]
    assert read is not None and read.start is not None and read.start >= FILLER
    assert not read.fell_back and read.records <= len(events)
    await second.shutdown()


async def test_a_goal_dated_far_ahead_is_dead_lettered(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    workflow = load_workflow(PIPELINE, settings=settings)
    topics = MemoryTopics("t", partitions=1)
    group = MemoryGroup(topics)
    core = WorkerCore(
        build_runtime(workflow, settings),
        WorkerConfig("memory", prefix="t"),
        topics.clients(),
        out=io.StringIO(),
    )
    await group.join(core)
    ref = WorkflowRef(name=workflow.name, digest=workflow.digest or None)
    late = uuid7_at(now_ms() + MAX_START_AHEAD_MS + 3_600_000)
    fine = new_event_id()
    for task_id in (late, fine):
        topics.produce_event(
            topics.layout.goals,
            GoalSubmitted(task_id=task_id, seq=1, goal="taxi 1 eur", workflow=ref),
        )
    await group.run_until_idle()
    (parked,) = topics.all(topics.layout.dlq)
    reason = dict(parked.headers)[HEADER_REASON].decode()
    assert late in reason and "ahead of this worker's clock" in reason
    assert await task_events(topics.clients().log, late) == []  # type: ignore[arg-type]
    assert (await task_events(topics.clients().log, fine))[-1].type == "task_completed"  # type: ignore[arg-type]
    await core.shutdown()


async def test_a_task_whose_goal_an_older_writer_stamped_early_is_rebuilt_not_rejected(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path)
    workflow = load_workflow(PIPELINE, settings=settings)
    topics = MemoryTopics("t", partitions=1)
    group = MemoryGroup(topics)
    task_id = new_event_id()
    ref = WorkflowRef(name=workflow.name, digest=workflow.digest or None)
    first = GoalSubmitted(task_id=task_id, seq=1, goal="taxi 2 eur", workflow=ref)
    # An older worker on a slow clock appended the goal as seq 1, then died.
    topics.produce(
        topics.layout.events,
        encode(first),
        task_id.encode(),
        event_headers(first),
        timestamp_ms=task_start_ms(task_id) - 5_000,  # type: ignore[operator]
    )
    core = WorkerCore(
        build_runtime(workflow, settings),
        WorkerConfig("memory", prefix="t"),
        topics.clients(),
        out=io.StringIO(),
    )
    await group.join(core)
    await group.run_until_idle()
    assert topics.all(topics.layout.dlq) == []
    events = await task_events(topics.clients().log, task_id)  # type: ignore[arg-type]
    assert events[-1].type == "task_completed"
    await core.shutdown()
