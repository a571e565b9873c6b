"""The same scripted scenario on each runner, and the shape of the events it left.

A runner takes a ``Scenario`` and returns the task's events (seq order). ``shape`` keeps
what must agree across runners (each event's type, agent, subtask and tool, and the same of
its cause) and drops what may not (ids, timestamps, the order of parallel branches).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from agentledger.agents.approvals import decision
from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.projections.task_state import TaskState, fold
from agentledger.schemas import (
    TERMINAL_TYPES,
    ApprovalDenied,
    ApprovalGranted,
    Event,
    GoalSubmitted,
    WorkflowRef,
)
from agentledger.settings import Settings
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_memory import MemoryGroup, MemoryTopics
from agentledger.streams.kafka_runner import WorkerConfig, WorkerCore, submit_goal
from agentledger.streams.kafka_topics import init_topics
from agentledger.streams.memory import MemoryEventLog
from agentledger.testing import task_events

ROOT = Path(__file__).resolve().parents[2]
Label = tuple[str, str, str, str]


@dataclass(frozen=True)
class Scenario:
    name: str
    workflow: Path
    goal: str
    approver: str | None = None
    """Grant every approval the task asks for, as this person (from another process)."""


SCENARIOS = [
    Scenario(
        "pipeline",
        ROOT / "examples" / "pipeline" / "workflow.yaml",
        "Summarise these expenses: taxi 23.50 eur; Hotel 180 EUR; lunch 14,20 eur",
    ),
    Scenario("tool-calls", ROOT / "tests" / "fixtures" / "deliveries" / "workflow.yaml", "go"),
    Scenario(
        "approval",
        ROOT / "tests" / "fixtures" / "approvals" / "workflow.yaml",
        "maintenance",
        approver="ann",
    ),
]


def label(event: Event) -> Label:
    def field(name: str) -> str:
        return str(getattr(event, name, "") or "")

    return (event.type, field("agent"), field("subtask_id"), field("tool"))


def shape(events: list[Event]) -> Counter[tuple[Label, Label | None]]:
    """Each event's label with its cause's label, as a multiset. Also checks what every
    runner must hold: seqs 1..n, event ids unique, every cause inside the task."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), [e.seq for e in events]
    by_id = {e.event_id: e for e in events}
    assert len(by_id) == len(events), "an event id appears twice"
    out: Counter[tuple[Label, Label | None]] = Counter()
    for event in events:
        cause = by_id.get(event.causation_id) if event.causation_id else None
        assert event.causation_id is None or cause is not None or event.seq == 1, event
        # The cause's subtask is left out: which of parallel branches finishes last (and so
        # causes what waited for all of them) is timing, not behaviour.
        out[(label(event), _without_subtask(label(cause)) if cause else None)] += 1
    return out


def _without_subtask(cause: Label) -> Label:
    return (cause[0], cause[1], "", cause[3])


def _terminal(events: list[Event]) -> bool:
    return any(e.type in TERMINAL_TYPES for e in events)


def _decisions(state: TaskState, approver: str | None) -> list[ApprovalGranted | ApprovalDenied]:
    if approver is None:
        return []
    return [
        decision(state, a.id, granted=True, by=approver, text=None) for a in state.pending_approvals
    ]


async def run_embedded(scenario: Scenario, home: Path) -> list[Event]:
    settings = Settings(home=home)
    workflow = load_workflow(scenario.workflow, settings=settings)
    log = MemoryEventLog()
    runner = EmbeddedRunner(log, build_runtime(workflow, settings))
    task_id = await runner.submit(scenario.goal)
    state = await runner.run(task_id)
    while not state.terminal:
        decided = _decisions(state, scenario.approver)
        assert decided, f"the task stopped without ending: {state.status}"
        await log.append(
            [d.model_copy(update={"seq": state.last_seq + i + 1}) for i, d in enumerate(decided)]
        )
        state = await runner.run(task_id)
    return await task_events(log, task_id)


def _goal(scenario: Scenario, workflow_name: str, digest: str | None) -> GoalSubmitted:
    ref = WorkflowRef(name=workflow_name, path=str(scenario.workflow), digest=digest)
    goal = GoalSubmitted(task_id="t-" + scenario.name, seq=1, goal=scenario.goal, workflow=ref)
    return goal.model_copy(update={"correlation_id": goal.task_id})


async def run_memory_worker(scenario: Scenario, home: Path, *, members: int = 1) -> list[Event]:
    """The Kafka worker's core over in-memory topics (``kafka_memory``)."""
    settings = Settings(home=home)
    workflow = load_workflow(scenario.workflow, settings=settings)
    topics = MemoryTopics("contract", partitions=2)
    group = MemoryGroup(topics)
    cores = []
    for _ in range(members):
        core = WorkerCore(
            build_runtime(workflow, settings),
            WorkerConfig("memory", prefix="contract", revoke_grace_s=1.0),
            topics.clients(),
            out=io.StringIO(),
        )
        cores.append(core)
        await group.join(core)
    goal = _goal(scenario, workflow.name, workflow.digest or None)
    topics.produce_event(topics.layout.goals, goal)
    log = topics.clients().log
    try:
        while True:
            await group.run_until_idle()
            events = await task_events(log, goal.task_id)  # type: ignore[arg-type]
            if _terminal(events):
                return events
            decided = _decisions(fold(goal.task_id, events), scenario.approver)
            assert decided, f"the task stopped without ending: {[e.type for e in events]}"
            for d in decided:  # unstamped, as `approve --brokers` produces them
                topics.produce_event(topics.layout.events, d)
    finally:
        for core in cores:
            await core.shutdown()


async def run_kafka_worker(
    scenario: Scenario,
    home: Path,
    bootstrap: str,
    prefix: str,
    *,
    consumer: str = "faust",
    within_s: float = 90.0,
) -> list[Event]:
    """An ``agentledger worker`` subprocess on the real broker (``--consumer``)."""
    await init_topics(bootstrap, prefix, partitions=1)
    out = (home / "worker.out").open("wb")
    err = (home / "worker.err").open("wb")
    env = {**os.environ, "AGENTLEDGER_HOME": str(home), "DELIVERIES_MODEL_DELAY": "0"}
    args = ["worker", str(scenario.workflow), "--brokers", bootstrap, "--prefix", prefix]
    args += ["--session-timeout", "3", "--fetch-wait-ms", "50", "--shutdown-timeout", "5"]
    args += ["--consumer", consumer]
    process = subprocess.Popen(  # noqa: ASYNC220  (a process that outlives this call)
        [sys.executable, "-m", "agentledger.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
    )
    log = KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=20)
    await log.start()
    try:
        task_id = await submit_goal(
            bootstrap, scenario.goal, workflow=scenario.workflow, prefix=prefix
        )
        decided: set[str] = set()
        deadline = time.monotonic() + within_s
        while True:
            assert process.poll() is None, (home / "worker.err").read_text()[-3000:]
            events = await task_events(log, task_id)
            if _terminal(events):
                await asyncio.sleep(0.3)  # anything after the end would show up here
                return await task_events(log, task_id)
            state = fold(task_id, events) if events else None
            if state is not None:
                pending = _decisions(state, scenario.approver)
                new = [d for d in pending if d.approval_id not in decided]
                if new:
                    await log.append(new)  # unstamped (seq 0): the worker stamps them
                    decided.update(d.approval_id for d in new)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} did not end in {within_s:g} s: {[e.type for e in events]}\n"
                    + (home / "worker.err").read_text()[-3000:]
                )
            await asyncio.sleep(0.1)
    finally:
        await log.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()
        err.close()
