"""SIGKILL the `agentledger run` process mid-task; `agentledger resume` must finish it from
the log with no side effect executed twice and no event lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.cli import DELIVERIES as FIXTURE
from tests.support.cli import cli_process as _cli
from tests.support.cli import stored_events as _events


def test_sigkill_mid_task_then_resume_finishes_without_repeating_side_effects(tmp_path: Path):
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path), "DELIVERIES_MODEL_DELAY": "0.3"}
    db = tmp_path / "ledger.db"
    proc = _cli("run", str(FIXTURE), "--goal", "deliver three parcels", env=env)
    deadline = time.monotonic() + 60
    try:
        # Kill once at least one delivery is recorded but the task is far from done.
        while True:
            assert proc.poll() is None, f"run exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "the run never reached a delivery"
            events = _events(db)
            if any(e["type"] == "tool_call_completed" for e in events):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)  # reap it and close its pipes
    assert proc.returncode == -signal.SIGKILL
    before = _events(db)
    task_id = before[0]["task_id"]
    assert not any(e["type"] == "task_completed" for e in before), (
        "killed too late to prove anything"
    )

    resumed = _cli("resume", task_id, env=env)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"task {task_id} completed" in out

    after = _events(db)
    # no event lost: what was there before the kill is still there, unchanged, in order
    assert after[: len(before)] == before
    assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
    assert after[-1]["type"] == "task_completed"
    assert after[-1]["result"] == "delivered: p1, p2, p3"
    # no side effect twice: each idempotency key executed at most once
    executions = [
        line.split()[0]
        for line in (tmp_path / "sandbox" / "deliveries.log").read_text().splitlines()
    ]
    assert len(executions) == len(set(executions))
    # every requested delivery has exactly one outcome
    requested = [e["idempotency_key"] for e in after if e["type"] == "tool_call_requested"]
    outcomes = [
        e["idempotency_key"]
        for e in after
        if e["type"] in ("tool_call_completed", "tool_call_failed")
    ]
    assert sorted(requested) == sorted(outcomes) and len(requested) == 3
    # executions that completed are exactly the recorded completions (none hidden, none extra)
    completed = {
        e["idempotency_key"]
        for e in after
        if e["type"] == "tool_call_completed" and not e["replayed"]
    }
    assert completed <= set(executions)
    # the killed process had delivered at least one parcel, and the resumed one finished
    executed_before = {e["idempotency_key"] for e in before if e["type"] == "tool_call_completed"}
    assert executed_before and executed_before <= set(executions)


def test_resume_of_a_finished_task_does_nothing(tmp_path: Path):
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path), "DELIVERIES_MODEL_DELAY": "0"}
    run = _cli("run", str(FIXTURE), "--goal", "deliver", "-q", env=env)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    task_id = out.strip().splitlines()[-1].split()[1]
    count = len(_events(tmp_path / "ledger.db"))
    again = _cli("resume", task_id, env=env)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "already completed" in out
    assert len(_events(tmp_path / "ledger.db")) == count
