"""Human approval of risky tool calls, with real runs on a real SQLite ledger.

The fixture workflow plans two independent subtasks: a janitor calls ``wipe_table`` (a
destructive, side-effecting tool that appends a line to ``wipes.log`` in the sandbox per
execution) and a scribe just answers. Destructive tools need approval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agentledger.agents.approval_policy import ApprovalPolicy
from agentledger.agents.approvals import decision
from agentledger.agents.workflow import Workflow, load_workflow
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel
from agentledger.projections.task_state import fold
from agentledger.schemas import Event, utc_now
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, task_events
from tests.support.cli import cli, ledger_events

FIXTURES = Path(__file__).parent.parent / "fixtures" / "approvals"
WORKFLOW = FIXTURES / "workflow.yaml"
sys.path.insert(0, str(FIXTURES))
from approvals_model import respond  # noqa: E402


def wipes(sandbox: Path) -> list[str]:
    path = sandbox / "wipes.log"
    return path.read_text().splitlines() if path.exists() else []


def of_subtask(events: list[Event], subtask_id: str) -> list[str]:
    return [e.type for e in events if getattr(e, "subtask_id", None) == subtask_id]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    return tmp_path


def run_until_paused(home: Path) -> tuple[str, str]:
    """``agentledger run`` of the fixture: it stops for the approval (exit 3)."""
    code, out, err = cli("run", str(WORKFLOW), "--goal", "nightly maintenance")
    assert code == 3, err
    task_id = out.splitlines()[0].split()[1]
    approval_id = next(w for w in out.split() if w.startswith("ap-"))
    return task_id, approval_id


def test_approval_pauses_only_its_subtask_and_approve_runs_the_call_once(home: Path):
    task_id, approval_id = run_until_paused(home)
    events = ledger_events(home, task_id)
    # the janitor's subtask waits; the scribe's completed meanwhile; nothing was wiped
    assert of_subtask(events, "wipe") == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "tool_call_requested",
        "approval_requested",
    ]
    assert of_subtask(events, "note")[-1] == "subtask_completed"
    requested = events[-1]
    assert requested.type == "approval_requested" and requested.approval_id == approval_id
    assert (requested.tool, requested.arguments, requested.agent, requested.risk) == (
        "wipe_table",
        {"table": "staging"},
        "janitor",
        "destructive",
    )
    assert requested.expires_at - requested.occurred_at == timedelta(days=1)
    assert wipes(home / "sandbox") == []

    code, out, _ = cli("status", task_id)
    assert code == 0 and "waiting for approval of 1 tool call(s)" in out and approval_id in out
    code, out, _ = cli("status", task_id, "--json")
    assert json.loads(out)["pending_approvals"] == [
        {"approval_id": approval_id, "tool": "wipe_table", "agent": "janitor", "subtask_id": "wipe"}
    ]
    code, out, _ = cli("approvals")
    assert code == 0
    assert f"task {task_id}" in out
    assert f'{approval_id}  wipe_table({{"table":"staging"}})  agent janitor, subtask wipe' in out

    code, out, err = cli("approve", approval_id, "--by", "ann", "--note", "maintenance window")
    assert code == 0, err
    assert f"approval {approval_id} granted by ann (task {task_id})" in out
    assert f"task {task_id} completed" in out
    after = ledger_events(home, task_id)
    assert [e.type for e in after[len(events) :]] == [
        "approval_granted",
        "tool_call_started",
        "tool_call_completed",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
        "task_completed",
    ]
    granted = after[len(events)]
    assert granted.causation_id == requested.event_id
    assert (granted.approved_by, granted.note) == ("ann", "maintenance window")
    assert after[-1].result["note"] == "maintenance noted"
    assert len(wipes(home / "sandbox")) == 1

    # a second decision is refused and changes nothing
    code, _, err = cli("deny", approval_id, "--reason", "too late", "--task", task_id)
    assert code == 2 and f"approval {approval_id} was already granted by ann" in err
    code, _, err = cli("approve", "ap-nosuch1")
    assert code == 2 and "no approval 'ap-nosuch1'" in err
    assert len(ledger_events(home, task_id)) == len(after)
    code, _, err = cli("approvals")
    assert "no pending approvals" in err


def test_deny_fails_the_subtask_cleanly_with_the_reason(home: Path):
    task_id, approval_id = run_until_paused(home)
    before = ledger_events(home, task_id)
    code, out, err = cli("deny", approval_id, "--by", "bob", "--reason", "staging is in use")
    assert code == 1
    assert f"approval {approval_id} denied by bob" in out
    after = ledger_events(home, task_id)
    assert [e.type for e in after[len(before) :]] == [
        "approval_denied",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    failed = after[len(before) + 1]
    assert failed.error_kind == "approval_denied"
    assert failed.reason == (
        f"call of 'wipe_table' ({approval_id}) denied by bob: staging is in use"
    )
    assert after[-1].error_kind == "approval_denied"
    assert wipes(home / "sandbox") == []
    code, _, err = cli("approve", approval_id, "--task", task_id)
    assert code == 2 and f"approval {approval_id} was already denied by bob" in err


def _workflow(policy: ApprovalPolicy) -> Workflow:
    return dataclasses.replace(load_workflow(WORKFLOW), approvals=policy)


async def _paused(tmp_path: Path, policy: ApprovalPolicy) -> tuple[SqliteEventLog, Workflow, str]:
    log = SqliteEventLog(tmp_path / "ledger.db")
    wf = _workflow(policy)
    runner = EmbeddedRunner(log, make_runtime(wf, ScriptedModel(respond), sandbox=tmp_path))
    task_id = await runner.submit("nightly maintenance")
    state = await runner.run(task_id)
    assert [a.status for a in state.pending_approvals] == ["pending"]
    return log, wf, task_id


async def _run_at(log: SqliteEventLog, wf: Workflow, task_id: str, days: float, sandbox: Path):
    later = utc_now() + timedelta(days=days)
    runtime = make_runtime(wf, ScriptedModel(respond), sandbox=sandbox)
    return await EmbeddedRunner(log, runtime, clock=lambda: later).run(task_id)


async def test_expiry_denies_the_call(tmp_path: Path):
    log, wf, task_id = await _paused(tmp_path, ApprovalPolicy(timeout_s=3600))
    before = await task_events(log, task_id)
    state = await _run_at(log, wf, task_id, 0.01, tmp_path)  # 15 minutes on: still waiting
    assert state.pending_approvals and len(await task_events(log, task_id)) == len(before)

    state = await _run_at(log, wf, task_id, 1, tmp_path)
    after = (await task_events(log, task_id))[len(before) :]
    assert [e.type for e in after] == [
        "approval_expired",
        "approval_denied",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    assert after[0].causation_id == before[-1].event_id  # the request set the deadline
    assert after[1].denied_by == "timeout-policy"
    assert after[1].reason.startswith("no decision within 3600s (expired at ")
    assert after[2].error_kind == "approval_denied"
    assert state.status == "failed" and wipes(tmp_path) == []
    await log.close()


async def test_expiry_escalates_once_then_a_second_expiry_denies(tmp_path: Path):
    policy = ApprovalPolicy(
        timeout_s=3600, on_timeout="escalate", escalate_to="oncall-lead", escalation_timeout_s=600
    )
    log, wf, task_id = await _paused(tmp_path, policy)
    before = await task_events(log, task_id)
    state = await _run_at(log, wf, task_id, 1, tmp_path)
    escalation = (await task_events(log, task_id))[len(before) :]
    assert [e.type for e in escalation] == ["approval_expired", "approval_escalated"]
    assert escalation[1].escalate_to == "oncall-lead"
    assert escalation[1].expires_at - escalation[0].occurred_at == timedelta(seconds=600)
    (pending,) = state.pending_approvals
    assert (pending.escalations, pending.expires_at) == (1, escalation[1].expires_at)
    assert state.status == "running"

    state = await _run_at(log, wf, task_id, 2, tmp_path)
    after = (await task_events(log, task_id))[len(before) + 2 :]
    assert [e.type for e in after] == [
        "approval_expired",
        "approval_denied",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    assert after[0].escalations == 1 and after[0].causation_id == escalation[1].event_id
    assert "after escalation to oncall-lead" in after[1].reason
    assert state.status == "failed" and wipes(tmp_path) == []
    await log.close()


async def test_a_duplicate_decision_in_the_log_is_ignored(tmp_path: Path):
    log, wf, task_id = await _paused(tmp_path, ApprovalPolicy())
    events = await task_events(log, task_id)
    runner = EmbeddedRunner(log, make_runtime(wf, ScriptedModel(respond), sandbox=tmp_path))
    state = await runner.run(task_id)
    approval_id = state.pending_approvals[0].id
    grant = decision(state, approval_id, granted=True, by="ann", text=None)
    deny = decision(state, approval_id, granted=False, by="mallory", text="no")
    # both land in the log (e.g. two people at once): the first one decides
    n = state.last_seq
    await log.append([grant.model_copy(update={"seq": n + 1})])
    await log.append([deny.model_copy(update={"seq": n + 2})])
    state = await runner.run(task_id)
    assert state.status == "completed"
    approval = state.approvals[approval_id]
    assert (approval.status, approval.decided_by) == ("granted", "ann")
    assert len(wipes(tmp_path)) == 1
    types = [e.type for e in (await task_events(log, task_id))[len(events) :]]
    assert types[:4] == [
        "approval_granted",
        "approval_denied",
        "tool_call_started",
        "tool_call_completed",
    ]
    assert "subtask_failed" not in types
    with pytest.raises(Exception, match="already granted by ann"):
        decision(state, approval_id, granted=False, by="x", text="late")
    await log.close()


async def test_a_decision_made_while_the_run_is_busy_is_taken_in(tmp_path: Path):
    """The person decides while the run still works on the other subtask."""
    gate = asyncio.Event()

    async def slow_scribe(request: ModelRequest) -> ModelResponse:
        if request.agent == "scribe":
            await gate.wait()
        return respond(request)

    log = SqliteEventLog(tmp_path / "ledger.db")
    wf = load_workflow(WORKFLOW)
    requested = asyncio.Event()

    def on_event(event: Event, fresh: bool) -> None:
        if event.type == "approval_requested":
            requested.set()

    runtime = make_runtime(wf, ScriptedModel(slow_scribe), sandbox=tmp_path)
    runner = EmbeddedRunner(log, runtime, on_event=on_event)
    task_id = await runner.submit("nightly maintenance")
    run = asyncio.create_task(runner.run(task_id))
    await requested.wait()
    state = fold(task_id, await task_events(log, task_id))
    grant = decision(state, state.pending_approvals[0].id, granted=True, by="ann", text=None)
    # another process (`agentledger approve --no-continue`) appends the decision
    other = SqliteEventLog(tmp_path / "ledger.db")
    await other.append([grant.model_copy(update={"seq": state.last_seq + 1})])
    await other.close()
    gate.set()
    state = await run
    assert state.status == "completed"
    events = await task_events(log, task_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(wipes(tmp_path)) == 1
    assert [e.type for e in events].count("approval_granted") == 1
    await log.close()


def test_pending_approval_survives_a_restart_through_the_real_cli(tmp_path: Path):
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path)}

    def agentledger(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentledger.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    run = agentledger("run", str(WORKFLOW), "--goal", "nightly maintenance")
    assert run.returncode == 3, run.stderr
    assert "is waiting for approval of 1 tool call" in run.stdout
    task_id = run.stdout.splitlines()[0].split()[1]
    approval_id = next(w for w in run.stdout.split() if w.startswith("ap-"))
    assert f"agentledger approve {approval_id}" in run.stdout

    # a new process: resume still waits, nothing ran
    resumed = agentledger("resume", task_id)
    assert resumed.returncode == 3 and approval_id in resumed.stdout
    listed = agentledger("approvals", "--json")
    assert listed.returncode == 0
    assert f'"approval_id":"{approval_id}","task_id":"{task_id}"' in listed.stdout
    assert '"tool":"wipe_table","arguments":{"table":"staging"}' in listed.stdout
    assert wipes(tmp_path / "sandbox") == []

    approved = agentledger("approve", approval_id, "--by", "ann")
    assert approved.returncode == 0, approved.stderr
    assert f"task {task_id} completed" in approved.stdout
    assert len(wipes(tmp_path / "sandbox")) == 1
    again = agentledger("resume", task_id)
    assert again.returncode == 0 and "already completed" in again.stdout
    assert len(wipes(tmp_path / "sandbox")) == 1
