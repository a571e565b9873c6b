"""WorkerCore over in-memory topics (``kafka_memory``): the worker's decisions about
records (duplicates, dead letters, stamping, held acknowledgements, rebalances, a lost
broker) checked in milliseconds, without a broker."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from agentledger.agents.approvals import decision
from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.projections.task_state import fold
from agentledger.schemas import GoalSubmitted, TaskCompleted, WorkflowRef
from agentledger.settings import Settings
from agentledger.streams.kafka_dlq import HEADER_REASON
from agentledger.streams.kafka_memory import MemoryGroup, MemoryTopics
from agentledger.streams.kafka_runner import WorkerConfig, WorkerCore
from agentledger.testing import task_events
from tests.support.runners import ROOT

PIPELINE = ROOT / "examples" / "pipeline" / "workflow.yaml"
APPROVALS = ROOT / "tests" / "fixtures" / "approvals" / "workflow.yaml"
NOTE = "Summarise these expenses: taxi 23.50 eur; lunch 14,20 eur"


class Deployment:
    def __init__(self, workflow: Path, home: Path, *, partitions: int = 2) -> None:
        self.settings = Settings(home=home)
        self.workflow = load_workflow(workflow, settings=self.settings)
        self.topics = MemoryTopics("t", partitions=partitions)
        self.group = MemoryGroup(self.topics)
        self.log = self.topics.clients().log
        self.cores: list[WorkerCore] = []

    async def add_worker(self, **config: float) -> WorkerCore:
        core = WorkerCore(
            build_runtime(self.workflow, self.settings),
            WorkerConfig("memory", prefix="t", **config),  # type: ignore[arg-type]
            self.topics.clients(),
            out=io.StringIO(),
        )
        self.cores.append(core)
        await self.group.join(core)
        return core

    def goal(self, task_id: str, text: str = NOTE) -> GoalSubmitted:
        ref = WorkflowRef(name=self.workflow.name, digest=self.workflow.digest or None)
        goal = GoalSubmitted(task_id=task_id, seq=1, goal=text, workflow=ref)
        self.topics.produce_event(self.topics.layout.goals, goal)
        return goal

    def dead_letters(self) -> list[tuple[str, bytes | None]]:
        return [
            (dict(r.headers)[HEADER_REASON].decode(), r.value)
            for r in self.topics.all(self.topics.layout.dlq)
        ]


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Deployment]:
    deployment = Deployment(PIPELINE, tmp_path)
    yield deployment
    for core in deployment.cores:
        await core.shutdown()


async def test_a_goal_delivered_twice_starts_one_task(pipeline: Deployment) -> None:
    core = await pipeline.add_worker()
    pipeline.goal("t1")
    pipeline.goal("t1")
    await pipeline.group.run_until_idle()
    events = await task_events(pipeline.log, "t1")  # type: ignore[arg-type]
    types = [e.type for e in events]
    assert types.count("goal_submitted") == 1 and types[-1] == "task_completed"
    assert (core.goals_started, core.tasks_finished) == (1, 1)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_bad_records_are_dead_lettered_and_the_next_goal_completes(
    pipeline: Deployment,
) -> None:
    core = await pipeline.add_worker()
    layout = pipeline.topics.layout
    key = b"t-bad"
    pipeline.topics.produce(layout.goals, b"{not json", key)
    pipeline.topics.produce(layout.goals, b"x" * 1_100_000, key)  # over the limit
    orphan = TaskCompleted(task_id="t-orphan", seq=2, result="done")
    pipeline.topics.produce_event(layout.events, orphan)
    pipeline.goal("t-bad")  # same partition as the bad goals: it must not be blocked
    await pipeline.group.run_until_idle()
    reasons = [reason for reason, _ in pipeline.dead_letters()]
    assert len(reasons) == 3, reasons
    assert any(r.startswith("invalid goal") for r in reasons)
    assert any(r.startswith("oversize record: 1100") for r in reasons)
    assert any("has no goal_submitted event" in r for r in reasons)
    reference = next(v for r, v in pipeline.dead_letters() if r.startswith("oversize"))
    assert reference is not None and orjson.loads(reference)["size"] >= 1_100_000
    events = await task_events(pipeline.log, "t-bad")  # type: ignore[arg-type]
    assert events[-1].type == "task_completed"
    assert core.dead_letters == 3 and "dead_letters=3" in core.health()


async def test_a_record_that_cannot_be_parked_is_skipped_and_counted(
    pipeline: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    core = await pipeline.add_worker(park_attempts=1)
    pipeline.topics.produce(pipeline.topics.layout.goals, b"{bad", b"k")
    record = pipeline.topics.all(pipeline.topics.layout.goals)[0]
    pipeline.topics.available = False
    with caplog.at_level(logging.WARNING, logger="agentledger.streams.kafka_runner"):
        await core.on_goal(record)
    assert (core.skipped_records, core.dead_letters) == (1, 0)
    assert "skipped_records=1" in core.health()
    assert all("\n" not in r.getMessage() for r in caplog.records)


async def test_a_lost_broker_is_degraded_until_it_is_back(pipeline: Deployment) -> None:
    core = await pipeline.add_worker()
    assert await core.probe_broker() and core.health().endswith("status=ok")
    pipeline.topics.available = False
    assert not await core.probe_broker()
    assert "status=degraded since=" in core.health() and "unreachable" in core.health()
    assert core.broker_lost_for() >= 0 and core.degraded_since is not None
    pipeline.topics.available = True
    assert await core.probe_broker() and core.degraded_since is None


async def test_a_worker_joining_mid_task_leaves_every_event_once(pipeline: Deployment) -> None:
    await pipeline.add_worker()
    for n in range(6):
        pipeline.goal(f"task-{n}")
    await pipeline.group.deliver()  # the goals become seq 1 of their tasks
    await pipeline.group.deliver()  # their first reactions start
    assert not pipeline.cores[0].idle()  # work in flight when the second member joins
    second = await pipeline.add_worker()
    await pipeline.group.run_until_idle()
    assert second.tasks_finished >= 1  # it took over partitions and finished their tasks
    for n in range(6):
        events = await task_events(pipeline.log, f"task-{n}")  # type: ignore[arg-type]
        types = [e.type for e in events]
        assert types[-1] == "task_completed" and types.count("task_completed") == 1, types
        assert types.count("subtask_completed") == 3, types
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_an_unstamped_decision_is_stamped_and_its_request_held_until_then(
    tmp_path: Path,
) -> None:
    deployment = Deployment(APPROVALS, tmp_path, partitions=1)
    try:
        core = await deployment.add_worker()
        deployment.goal("m1", "maintenance")
        await deployment.group.run_until_idle()
        events = await task_events(deployment.log, "m1")  # type: ignore[arg-type]
        state = fold("m1", events)
        (pending,) = state.pending_approvals
        requested = next(e for e in events if e.type == "approval_requested")
        events_tp = (deployment.topics.layout.events, 0)
        record = next(
            r
            for r in deployment.topics.all(deployment.topics.layout.events)
            if dict(r.headers)["x-agentledger-event-id"] == requested.event_id.encode()
        )
        # The request waits for a person: the committed offset never passes it.
        assert deployment.group.committed[events_tp] <= record.kafka_offset
        assert "approvals_waiting=1" in core.health()

        grant = decision(state, pending.id, granted=True, by="ann", text=None)
        assert grant.seq == 0
        deployment.topics.produce_event(deployment.topics.layout.events, grant)
        await deployment.group.run_until_idle()
        events = await task_events(deployment.log, "m1")  # type: ignore[arg-type]
        stamped = [e for e in events if e.event_id == grant.event_id]
        assert len(stamped) == 1 and stamped[0].seq > requested.seq
        assert events[-1].type == "task_completed"
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert deployment.group.committed[events_tp] > record.kafka_offset
    finally:
        for core in deployment.cores:
            await core.shutdown()
