"""The CLI in-process (``main(argv)``) against a real SQLite ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentledger.schemas import EVENT_TYPES
from tests.support.cli import DELIVERIES as FIXTURE
from tests.support.cli import cli


@pytest.fixture
def finished_task(home: Path) -> str:
    code, out, err = cli("run", str(FIXTURE), "--goal", "deliver three parcels")
    assert code == 0, err
    return out.strip().splitlines()[-1].split()[1]


def test_run_shows_progress_result_and_task_id(home: Path):
    code, out, err = cli(
        "run", str(FIXTURE), "--goal", "deliver three parcels", "-o", str(home / "r.txt")
    )
    assert code == 0, err
    assert "using the offline scripted model" in err
    assert "tool_call_completed" in out and "task_completed" in out
    assert (home / "r.txt").read_text() == "delivered: p1, p2, p3\n"
    assert out.strip().endswith("completed")
    assert (home / "ledger.db").exists()


def test_status_and_events_rebuild_from_the_log(finished_task: str):
    code, out, _ = cli("status", finished_task)
    assert code == 0
    assert "status    completed" in out and "report" in out and "courier" in out
    code, out, _ = cli("status", finished_task, "--json")
    state = json.loads(out)
    assert state["status"] == "completed" and state["tool_calls"] == 3
    assert set(state["subtasks"]) == {"_plan", "p1", "p2", "p3", "report"}

    code, out, _ = cli("events", finished_task, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "goal_submitted" and events[-1]["type"] == "task_completed"
    code, text, _ = cli("events", finished_task[:12])  # a unique prefix is enough
    assert code == 0 and len(text.splitlines()) == len(events)


def test_replay_until_shows_the_state_as_it_was(finished_task: str):
    _, out, _ = cli("events", finished_task, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    planned = next(e["seq"] for e in events if e["type"] == "task_planned")
    code, out, _ = cli("replay", finished_task, "--until", str(planned))
    assert code == 0
    timeline, state = out.split(f"--- state as of seq {planned} ---")
    assert len(timeline.strip().splitlines()) == planned
    assert "status    running" in state
    assert "p1             courier      pending" in state
    code, out, _ = cli("replay", finished_task, "--until", str(planned), "--json")
    body = json.loads(out)
    assert body["state"]["status"] == "running" and len(body["events"]) == planned


def test_unknown_task_is_a_clear_usage_error(finished_task: str):
    code, _, err = cli("status", "no-such-task")
    assert code == 2
    assert "no events for task 'no-such-task'" in err


def test_invalid_workflow_file_is_refused_with_every_problem(home: Path):
    bad = home / "bad.yaml"
    bad.write_text("name: x\norchestrator: p\nagents:\n  p: {routes_to: [ghost]}\n  q: {}\n")
    code, _, err = cli("run", str(bad), "--goal", "g")
    assert code == 2
    assert "dangling edge to unknown agent 'ghost'" in err and "'q' is unreachable" in err
    code, out, _ = cli("validate", str(FIXTURE))
    assert code == 0 and "dispatcher -> courier" in out


def test_corrupt_event_is_reported_with_its_offset_and_nothing_else_lost(
    finished_task: str, home: Path
):
    db = sqlite3.connect(home / "ledger.db")
    (offset, total) = db.execute(
        "SELECT (SELECT offset FROM events WHERE task_id = ? AND seq = 5), COUNT(*) FROM events WHERE task_id = ?",
        (finished_task, finished_task),
    ).fetchone()
    db.execute("UPDATE events SET data = ? WHERE offset = ?", (b'{"type": "teleported"}', offset))
    db.commit()
    db.close()
    code, out, err = cli("events", finished_task)
    assert code == 0
    assert f"!! offset {offset} (seq 5): unknown event type 'teleported'" in err
    assert len(out.splitlines()) == total - 1
    code, out, err = cli("status", finished_task)
    assert code == 0 and "status    completed" in out and f"offset {offset}" in err


def test_schemas_export(tmp_path: Path):
    code, out, _ = cli("schemas", "export", str(tmp_path / "s"))
    # one per event type, plus the union
    assert code == 0 and f"wrote {len(EVENT_TYPES) + 1} JSON Schemas" in out
    schema = json.loads((tmp_path / "s" / "goal_submitted.schema.json").read_text())
    assert schema["properties"]["type"]["const"] == "goal_submitted"


def test_follow_of_a_finished_task_returns(finished_task: str):
    code, out, _ = cli("events", finished_task, "--follow")
    assert code == 0
    assert out.strip().splitlines()[-1].split()[3] == "task_completed"
