"""Human approvals in the distributed shape, against a real broker: an `agentledger worker`
subprocess runs the maintenance workflow (a janitor's ``wipe_table`` call needs approval,
a scribe works in parallel); people decide with `agentledger approvals|approve|deny
--brokers` from other processes; the worker stamps each decision, continues the task and
expires deadlines on its own timer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import orjson
import pytest

from agentledger.agents.approval_policy import ApprovalPolicy
from agentledger.agents.approvals import decision, expired_approvals
from agentledger.agents.workflow import load_workflow
from agentledger.llm import ScriptedModel
from agentledger.projections.task_state import fold
from agentledger.schemas import ApprovalRequested, Event, utc_now
from agentledger.streams import Recorded
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_runner import submit_goal
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, task_events

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "approvals"
WORKFLOW = FIXTURES / "workflow.yaml"
EXPIRING = FIXTURES / "expiring.yaml"
T = TypeVar("T")
sys.path.insert(0, str(FIXTURES))
from approvals_model import respond  # noqa: E402


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)


@dataclass
class Deployment:
    """Topics under a prefix of their own and one worker subprocess running ``workflow``."""

    bootstrap: str
    workflow: Path
    home: Path
    prefix: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "AGENTLEDGER_HOME": str(self.home)}

    @property
    def conn(self) -> tuple[str, ...]:
        return ("--brokers", self.bootstrap, "--prefix", self.prefix)

    def agentledger(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentledger.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def output(self, index: int = -1) -> str:
        path = self.home / f"worker{index % len(self.workers)}.out"
        return path.read_text() if path.exists() else ""

    def describe(self) -> str:
        parts = []
        for i in range(len(self.workers)):
            err = self.home / f"worker{i}.err"
            parts.append(
                f"worker {i} stdout:\n{self.output(i)}\nstderr:\n"
                + (err.read_text()[-3000:] if err.exists() else "")
            )
        return "\n".join(parts)

    def start_worker(self) -> None:
        index = len(self.workers)
        out, err = self.home / f"worker{index}.out", self.home / f"worker{index}.err"
        with out.open("wb") as out_fh, err.open("wb") as err_fh:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agentledger.cli",
                    "worker",
                    str(self.workflow),
                    *self.conn,
                    "--session-timeout",
                    "3",
                    "--fetch-wait-ms",
                    "50",
                    "--health-interval",
                    "0.5",
                    "--approval-check-interval",
                    "0.2",
                    "--shutdown-timeout",
                    "10",
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=err_fh,
            )
        self.workers.append(worker)
        wait_for(
            lambda: "worker assigned:" in self.output() and "events=[0]" in self.output(),
            60,
            "the worker to get the partition\n" + self.describe(),
        )

    def stop_worker(self) -> None:
        worker = self.workers[-1]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, self.describe()
        assert "worker stopped:" in self.output(), self.describe()

    def submit(self) -> str:
        return asyncio.run(
            submit_goal(
                self.bootstrap, "nightly maintenance", workflow=self.workflow, prefix=self.prefix
            )
        )

    def events(self, task_id: str) -> list[Event]:
        return asyncio.run(self._read(task_id))

    async def _read(self, task_id: str) -> list[Event]:
        async with KafkaEventLog(self.bootstrap, prefix=self.prefix, fetch_max_wait_ms=50) as log:
            return [e.event for e in await log.read_task(task_id) if isinstance(e, Recorded)]

    def copies(self, event_id: str) -> list[int]:
        """The seq of every record of ``event_id`` in the events topic, as stored."""

        async def read() -> list[int]:
            async with KafkaEventLog(
                self.bootstrap, prefix=self.prefix, fetch_max_wait_ms=50
            ) as log:
                entries = await log.read_from(0)
            return [
                e.event.seq
                for e in entries
                if isinstance(e, Recorded) and e.event.event_id == event_id
            ]

        return asyncio.run(read())

    def wait_request(self, task_id: str) -> tuple[list[Event], ApprovalRequested]:
        """Until the task waits for nothing but the approval (the scribe's subtask done)."""

        def waiting() -> list[Event] | None:
            assert self.workers[-1].poll() is None, self.describe()
            events = self.events(task_id)
            state = fold(task_id, events)
            note = state.subtasks.get("note")
            done = note is not None and note.status == "completed"
            return events if done and state.pending_approvals else None

        events = wait_for(waiting, 60, f"task {task_id} to wait for approval\n{self.describe()}")
        request = next(e for e in events if isinstance(e, ApprovalRequested))
        return events, request

    def wait_terminal(self, task_id: str) -> list[Event]:
        def ended() -> list[Event] | None:
            assert self.workers[-1].poll() is None, self.describe()
            events = self.events(task_id)
            ended = bool(events) and events[-1].type in ("task_completed", "task_failed")
            return events if ended else None

        return wait_for(ended, 60, f"task {task_id} to end\n{self.describe()}")

    def wipes(self, idempotency_key: str) -> int:
        """How often the wipe of this call really ran (one line per execution)."""
        path = self.home / "sandbox" / "wipes.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return sum(1 for line in lines if line.split()[0] == idempotency_key)


@contextlib.contextmanager
def deployed(bootstrap: str, workflow: Path, home: Path) -> Iterator[Deployment]:
    home.mkdir(parents=True, exist_ok=True)
    deployment = Deployment(bootstrap, workflow, home)
    init = deployment.agentledger("kafka", "init", *deployment.conn, "--partitions", "1")
    assert init.returncode == 0, init.stderr
    try:
        deployment.start_worker()
        yield deployment
    finally:
        for worker in deployment.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in deployment.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)


@pytest.fixture(scope="module")
def maintenance(
    kafka_broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One worker of the maintenance workflow (approvals wait a day), shared by the tests."""
    with deployed(kafka_broker, WORKFLOW, tmp_path_factory.mktemp("kafka-approvals")) as d:
        yield d


def of_subtask(events: list[Event], subtask_id: str) -> list[str]:
    return [e.type for e in events if getattr(e, "subtask_id", None) == subtask_id]


def until_failed(types: list[str]) -> list[str]:
    """``types`` up to the subtask's failure: what the orchestrator does about the failure
    afterwards (its failure policy, then ``task_failed``) is not these tests' subject."""
    return types[: types.index("subtask_failed") + 1] if "subtask_failed" in types else types


def assert_well_formed(events: list[Event]) -> None:
    """Seq contiguous from 1 and each event once: every decision got a seq of its own."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)


WAITING = [
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "tool_call_requested",
    "approval_requested",
]


def test_approve_from_another_process_lets_the_worker_run_the_call_once(
    maintenance: Deployment,
) -> None:
    d = maintenance
    task_id = d.submit()
    before, request = d.wait_request(task_id)
    assert of_subtask(before, "wipe") == WAITING
    ident = request.approval_id

    listed = d.agentledger("approvals", *d.conn)
    assert listed.returncode == 0, listed.stderr
    assert f"task {task_id}" in listed.stdout
    assert (
        f'{ident}  wipe_table({{"table":"staging"}})  agent janitor, subtask wipe' in listed.stdout
    )
    assert "risk destructive" in listed.stdout and "expires in 23h59m" in listed.stdout
    rows = [orjson.loads(x) for x in d.agentledger("approvals", "--json", *d.conn).stdout.split()]
    mine = [r for r in rows if r["task_id"] == task_id]
    assert [(r["approval_id"], r["expired"], r["decision_sent"]) for r in mine] == [
        (ident, False, None)
    ]
    assert d.wipes(request.idempotency_key) == 0

    approved = d.agentledger("approve", ident, *d.conn, "--by", "ann", "--note", "window")
    assert approved.returncode == 0, approved.stderr
    assert f"approval {ident} granted by ann (task {task_id}); the task's worker" in approved.stdout

    events = d.wait_terminal(task_id)
    assert events[-1].type == "task_completed", [e.type for e in events]
    assert events[-1].result["note"] == "maintenance noted"
    assert of_subtask(events, "wipe") == [
        *WAITING,
        "approval_granted",
        "tool_call_started",
        "tool_call_completed",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]
    assert_well_formed(events)
    granted = next(e for e in events if e.type == "approval_granted")
    assert granted.causation_id == request.event_id
    assert (granted.approved_by, granted.note) == ("ann", "window")
    # produced unstamped by `approve`, stamped once by the worker: the stamp is what counts
    assert d.copies(granted.event_id) == [0, granted.seq]
    assert d.wipes(request.idempotency_key) == 1

    again = d.agentledger("deny", ident, *d.conn, "--reason", "too late", "--task", task_id)
    assert again.returncode == 2 and f"approval {ident} was already granted by ann" in again.stderr
    assert len(d.events(task_id)) == len(events)


def test_deny_from_another_process_fails_the_subtask_cleanly(maintenance: Deployment) -> None:
    d = maintenance
    task_id = d.submit()
    before, request = d.wait_request(task_id)
    denied = d.agentledger(
        "deny", request.approval_id, *d.conn, "--by", "bob", "--reason", "staging is in use"
    )
    assert denied.returncode == 0, denied.stderr
    assert f"approval {request.approval_id} denied by bob" in denied.stdout

    events = d.wait_terminal(task_id)
    assert until_failed([e.type for e in events[len(before) :]]) == [
        "approval_denied",
        "subtask_failed",
    ]
    assert events[-1].type == "task_failed"
    failed = events[len(before) + 1]
    assert failed.error_kind == "approval_denied"
    assert failed.reason == (
        f"call of 'wipe_table' ({request.approval_id}) denied by bob: staging is in use"
    )
    assert events[-1].error_kind == "approval_denied"
    assert_well_formed(events)
    assert d.wipes(request.idempotency_key) == 0


def test_a_decision_produced_at_a_seq_the_worker_already_used_is_stamped_anew(
    maintenance: Deployment,
) -> None:
    """A producer that stamps its own decision (not `agentledger approve`) and picks a seq
    that is taken: the worker neither skips it nor forks the task's order."""
    d = maintenance
    task_id = d.submit()
    before, request = d.wait_request(task_id)
    grant = decision(fold(task_id, before), request.approval_id, granted=True, by="eve", text=None)
    taken = grant.model_copy(update={"seq": request.seq})

    async def produce() -> None:
        async with KafkaEventLog(d.bootstrap, prefix=d.prefix) as log:
            await log.append([taken])

    asyncio.run(produce())
    events = d.wait_terminal(task_id)
    assert events[-1].type == "task_completed", [e.type for e in events]
    assert_well_formed(events)
    granted = [e for e in events if e.type == "approval_granted"]
    assert [(e.event_id, e.approved_by) for e in granted] == [(grant.event_id, "eve")]
    assert granted[0].seq > len(before)
    assert d.copies(grant.event_id) == [request.seq, granted[0].seq]
    assert d.wipes(request.idempotency_key) == 1


def test_a_worker_restart_keeps_the_approval_pending(maintenance: Deployment) -> None:
    d = maintenance
    task_id = d.submit()
    before, request = d.wait_request(task_id)
    d.stop_worker()
    d.start_worker()
    # The request's record was never committed past, so the new worker meets the task
    # again and holds it (its timer covers it), without adding anything to it.
    wait_for(
        lambda: "approvals_waiting=1" in d.output(),
        30,
        "the restarted worker to host the waiting task\n" + d.describe(),
    )
    assert d.events(task_id) == before
    listed = d.agentledger("approvals", "--task", task_id, *d.conn)
    assert listed.returncode == 0 and request.approval_id in listed.stdout, listed.stderr

    approved = d.agentledger("approve", request.approval_id, *d.conn, "--by", "ann")
    assert approved.returncode == 0, approved.stderr
    events = d.wait_terminal(task_id)
    assert events[-1].type == "task_completed", [e.type for e in events]
    assert_well_formed(events)
    assert d.wipes(request.idempotency_key) == 1


def test_the_worker_expires_an_undecided_request_escalates_once_then_denies(
    kafka_broker: str, tmp_path: Path
) -> None:
    with deployed(kafka_broker, EXPIRING, tmp_path) as d:
        task_id = d.submit()
        events = d.wait_terminal(task_id)
    assert events[-1].type == "task_failed", [e.type for e in events]
    assert until_failed(of_subtask(events, "wipe")) == [
        *WAITING,
        "approval_expired",
        "approval_escalated",
        "approval_expired",
        "approval_denied",
        "subtask_failed",
    ]
    assert_well_formed(events)
    request, first, escalated, second, denied = (
        e
        for e in events
        if e.type
        in (
            "approval_requested",
            "approval_expired",
            "approval_escalated",
            "approval_denied",
        )
    )
    assert first.causation_id == request.event_id and first.escalations == 0
    assert escalated.escalate_to == "oncall-lead"
    assert second.causation_id == escalated.event_id and second.escalations == 1
    assert first.occurred_at >= request.expires_at
    assert second.occurred_at >= escalated.expires_at
    assert denied.denied_by == "timeout-policy"
    waited = (escalated.expires_at - request.occurred_at).total_seconds()
    assert denied.reason == (
        f"no decision within {waited:g}s (expired at {escalated.expires_at:%Y-%m-%d %H:%M:%S} "
        "UTC, after escalation to oncall-lead)"
    )
    assert events[-1].error_kind == "approval_denied"
    assert d.wipes(request.idempotency_key) == 0


async def test_one_deadline_expired_twice_is_acted_on_once(tmp_path: Path) -> None:
    """Two workers that both expired one deadline (one outliving its membership): the
    log holds two ``approval_expired``; the first escalates, the second does nothing."""
    policy = ApprovalPolicy(timeout_s=60, on_timeout="escalate", escalate_to="oncall-lead")
    workflow = dataclasses.replace(load_workflow(WORKFLOW), approvals=policy)
    log = SqliteEventLog(tmp_path / "ledger.db")
    runner = EmbeddedRunner(log, make_runtime(workflow, ScriptedModel(respond), sandbox=tmp_path))
    task_id = await runner.submit("nightly maintenance")
    state = await runner.run(task_id)
    before = await task_events(log, task_id)
    later = utc_now() + timedelta(minutes=2)
    racing = [*expired_approvals(state, later), *expired_approvals(state, later)]
    await log.append(
        [e.model_copy(update={"seq": state.last_seq + 1 + i}) for i, e in enumerate(racing)]
    )
    state = await runner.run(task_id)
    after = (await task_events(log, task_id))[len(before) :]
    assert [e.type for e in after] == ["approval_expired", "approval_expired", "approval_escalated"]
    assert after[2].causation_id == racing[0].event_id
    (pending,) = state.pending_approvals
    assert (pending.escalations, pending.status, state.status) == (1, "pending", "running")
    await log.close()
