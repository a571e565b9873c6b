"""One side-effect counter, three ways to repeat work: a SIGKILL and `resume`, a retry
(the request delivered again, as at-least-once transport does, and `resume` run again),
and `replay`. The counter shows each delivery executed exactly once."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from agentledger.agents.context import ProcessorContext
from agentledger.agents.runtime import build_runtime
from agentledger.agents.tool_executor import ToolExecutor
from agentledger.agents.workflow import load_workflow
from agentledger.projections.task_state import fold
from agentledger.schemas import ToolCallRequested, decode
from agentledger.settings import Settings
from tests.support.cli import DELIVERIES as FIXTURE
from tests.support.cli import cli_process as _cli
from tests.support.cli import stored_events as _events

pytestmark = pytest.mark.integration


def _executions(home: Path) -> collections.Counter[str]:
    """How often each idempotency key ran: the tool appends one line per execution."""
    lines = (home / "sandbox" / "deliveries.log").read_text().splitlines()
    return collections.Counter(line.split()[0] for line in lines)


def test_each_delivery_runs_exactly_once_across_kill_resume_retry_and_replay(tmp_path: Path):
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path), "DELIVERIES_MODEL_DELAY": "0.3"}
    db = tmp_path / "ledger.db"

    # 1. SIGKILL the run once a delivery is recorded, then resume it
    proc = _cli("run", str(FIXTURE), "--goal", "deliver three parcels", env=env)
    deadline = time.monotonic() + 60
    try:
        while not any(e["type"] == "tool_call_completed" for e in _events(db)):
            assert proc.poll() is None, f"run exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "the run never reached a delivery"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    task_id = _events(db)[0]["task_id"]
    resumed = _cli("resume", task_id, env=env)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    events = _events(db)
    completed = {
        e["idempotency_key"]
        for e in events
        if e["type"] == "tool_call_completed" and not e["replayed"]
    }
    unknown = {
        e["idempotency_key"]
        for e in events
        if e["type"] == "tool_call_failed" and e["error_kind"] == "outcome_unknown"
    }
    assert len(completed | unknown) == 3
    after_resume = _executions(tmp_path)
    assert {k: after_resume[k] for k in completed} == dict.fromkeys(completed, 1)
    assert all(after_resume[k] <= 1 for k in unknown)  # cut short: reported, not re-run

    # 2. a retry: every delivery request handed to the executor again, with the state
    #    rebuilt from the log, is answered from the idempotency ledger
    settings = Settings(home=tmp_path)
    runtime = build_runtime(load_workflow(FIXTURE, settings=settings), settings)
    history = [decode(data) for data in _raw(db)]
    state = fold(task_id, [e for e in history if e.type != "task_completed"])
    requests = [
        e for e in history if isinstance(e, ToolCallRequested) and e.idempotency_key in completed
    ]
    for request in requests:
        redelivered = request.model_copy(update={"event_id": f"again-{request.event_id}"})
        (outcome,) = asyncio.run(
            ToolExecutor().handle(redelivered, ProcessorContext(state, runtime))
        )
        assert outcome.type == "tool_call_completed" and outcome.replayed  # type: ignore[attr-defined]
    again = _cli("resume", task_id, env=env)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0 and "already completed" in out

    # 3. a replay at every point of the history
    for seq in range(1, len(events) + 1, 7):
        replay = _cli("replay", task_id, "--until", str(seq), env=env)
        replay.communicate(timeout=60)
        assert replay.returncode == 0

    assert _executions(tmp_path) == after_resume
    assert len(_events(db)) == len(events)  # retry and replay wrote nothing


def _raw(db: Path) -> list[bytes]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in con.execute("SELECT data FROM events ORDER BY offset")]
    finally:
        con.close()
