"""TaskHost, the per-task lifecycle both runners share, driven by hand over the in-memory
log: building from a history, dispatching each event once, the next-free-seq rule for a
person's decisions (taken in, or stamped again by the one writer), approval expiry once
per deadline. No runner, no broker: milliseconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from agentledger.agents.approvals import decision
from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import Workflow, load_workflow
from agentledger.schemas import Event, EventBase, GoalSubmitted, WorkflowRef, new_event_id
from agentledger.settings import Settings
from agentledger.streams.log import CorruptRecord, Recorded
from agentledger.streams.memory import MemoryEventLog
from agentledger.streams.task_host import History, TaskHost, finished
from tests.support.runners import ROOT

APPROVALS = ROOT / "tests" / "fixtures" / "approvals" / "workflow.yaml"


class Hosted:
    """One task hosted over a MemoryEventLog, the way a runner does it."""

    def __init__(self, workflow: Workflow, settings: Settings, task_id: str = "m1") -> None:
        self.workflow = workflow
        self.runtime = build_runtime(workflow, settings)
        self.log = MemoryEventLog()
        self.task_id = task_id
        self.queue: list[Event] = []
        self.host = TaskHost(self.runtime, task_id, self.append)

    async def append(self, batch: list[EventBase]) -> None:
        recorded = await self.log.append(batch)
        self.queue.extend(r.event for r in recorded)

    async def start(self) -> None:
        ref = WorkflowRef(name=self.workflow.name, digest=self.workflow.digest or None)
        goal = GoalSubmitted(task_id=self.task_id, seq=1, goal="maintenance", workflow=ref)
        await self.log.append([goal])
        history = History.of(await self.log.read_task(self.task_id))
        self.host.load(history.events)
        await self.host.start_tools(history.events)
        self.queue.extend(history.events)
        await self.settle()

    async def settle(self) -> None:
        """Dispatch what was appended until nothing is queued or in flight."""
        while True:
            while self.queue:
                self.host.dispatch(self.queue.pop(0))
            if not self.host.busy:
                return
            await asyncio.wait(self.host.driver.inflight())

    async def events(self) -> list[Event]:
        return [e.event for e in await self.log.read_task(self.task_id) if isinstance(e, Recorded)]


@pytest.fixture
async def waiting(tmp_path: Path) -> AsyncIterator[Hosted]:
    """A maintenance task waiting for a person's approval of its wipe."""
    settings = Settings(home=tmp_path)
    hosted = Hosted(load_workflow(APPROVALS, settings=settings), settings)
    await hosted.start()
    assert len(hosted.host.state.pending_approvals) == 1 and not hosted.host.finished
    yield hosted
    await hosted.host.driver.cancel()
    await hosted.runtime.aclose()


def test_a_history_sets_corrupt_and_unstamped_records_apart() -> None:
    ref = WorkflowRef(name="maintenance")
    goal = GoalSubmitted(task_id="t", seq=1, goal="g", workflow=ref)
    unstamped = GoalSubmitted(task_id="t", seq=0, goal="g", workflow=ref)
    bad = CorruptRecord(offset=2, task_id="t", seq=2, reason="not JSON", data=b"{")
    history = History.of([Recorded(1, goal), bad, Recorded(3, unstamped)])
    assert (history.events, history.unstamped, history.corrupt) == ([goal], [unstamped], [bad])
    assert history.goal == goal and not history.finished and not finished(history.events)


def test_a_history_without_a_goal_or_of_another_workflow_cannot_be_hosted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workflow = load_workflow(APPROVALS, settings=Settings(home=tmp_path))
    where = {"source": "t.events", "runners": "workers in group t.workers"}
    assert History().problem("t", workflow, **where) == (
        "task t has no goal_submitted event in t.events; its events cannot be processed"
    )
    other = GoalSubmitted(task_id="t", seq=1, goal="g", workflow=WorkflowRef(name="billing"))
    assert History.of([Recorded(1, other)]).problem("t", workflow, **where) == (
        "task t runs workflow 'billing'; workers in group t.workers run 'maintenance'"
    )
    older = GoalSubmitted(
        task_id="t", seq=1, goal="g", workflow=WorkflowRef(name="maintenance", digest="old")
    )
    with caplog.at_level(logging.WARNING, logger="agentledger.streams.task_host"):
        assert History.of([Recorded(1, older)]).problem("t", workflow, **where) is None
    assert "another version of maintenance" in caplog.text  # runs, but says so


async def test_each_event_is_dispatched_once(waiting: Hosted) -> None:
    host = waiting.host
    events = await waiting.events()
    assert host.last_seq == events[-1].seq and host.seen == {e.event_id for e in events}
    assert not any(host.dispatch(e) for e in events)  # seen: nothing folded or started again
    assert not host.busy and host.state.last_seq == events[-1].seq
    # Read back from a shared log: a seq already dispatched is skipped, whatever its id.
    copy = events[-1].model_copy(update={"event_id": new_event_id()})
    assert not host.dispatch(copy, consumed=True)


async def test_where_a_decision_counts_and_where_it_is_stamped(waiting: Hosted) -> None:
    host = waiting.host
    (pending,) = host.state.pending_approvals
    grant = decision(host.state, pending.id, granted=True, by="ann", text=None)
    events = await waiting.events()
    assert grant.seq == 0 and host.arrival(grant) == "stamp"  # unstamped
    at_next = grant.model_copy(update={"seq": host.last_seq + 1})
    assert host.arrival(at_next) == "next"  # exactly the next free seq: it counts there
    assert host.arrival(grant.model_copy(update={"seq": 2})) == "stamp"  # a taken seq
    assert host.arrival(grant.model_copy(update={"seq": host.last_seq + 2})) == "stamp"
    other = events[1].model_copy(update={"event_id": new_event_id()})
    assert host.arrival(other) == "taken"  # anything else at a taken seq is ignored
    ahead = other.model_copy(update={"seq": host.last_seq + 3})
    assert host.arrival(ahead) == "gap"  # what lies between is read first
    assert host.arrival(events[-1]) == "dispatched"


async def test_decisions_are_taken_in_only_when_all_are_decisions(waiting: Hosted) -> None:
    host = waiting.host
    (pending,) = host.state.pending_approvals
    grant = decision(host.state, pending.id, granted=True, by="ann", text=None)
    at_next = grant.model_copy(update={"seq": host.driver.next_seq})
    stray = (await waiting.events())[-1].model_copy(
        update={"event_id": new_event_id(), "seq": host.driver.next_seq + 1}
    )
    before = host.driver.next_seq
    assert host.take_in([at_next, stray]) is None  # another runner is writing the task
    assert host.driver.next_seq == before
    assert host.take_in([at_next]) == [at_next]
    assert host.driver.next_seq == before + 1  # the host appends after it
    waiting.queue.append(at_next)
    await waiting.settle()
    assert host.finished and host.state.status == "completed"


async def test_the_one_writer_stamps_a_decision_once_at_its_next_seq(waiting: Hosted) -> None:
    host = waiting.host
    (pending,) = host.state.pending_approvals
    grant = decision(host.state, pending.id, granted=True, by="ann", text=None)
    next_seq = host.driver.next_seq
    stamping = host.stamp(grant)
    assert stamping is not None and host.stamp(grant) is None  # once, while in flight
    await stamping
    assert host.stamp((await waiting.events())[0]) is None  # only decisions are stamped
    (copy,) = [e for e in await waiting.events() if e.event_id == grant.event_id]
    assert copy.seq == next_seq and copy.type == "approval_granted"
    await waiting.settle()
    assert host.finished and host.state.status == "completed"
    assert host.stamp(grant) is None  # dispatched (and the task ended)


async def test_an_approval_deadline_expires_once(waiting: Hosted) -> None:
    host = waiting.host
    (pending,) = host.state.pending_approvals
    assert host.expired(pending.expires_at - timedelta(seconds=1)) == []
    later = pending.expires_at + timedelta(seconds=1)
    (expired,) = host.expired(later)
    assert expired.event_type == "approval_expired" and expired.causation_id
    assert host.expired(later) == []  # sent once, even before it is recorded
    await host.driver.emit([expired])
    await waiting.settle()
    assert host.finished  # on_timeout: deny, and the task ends without the wipe
    assert host.expired(later + timedelta(days=1)) == []
