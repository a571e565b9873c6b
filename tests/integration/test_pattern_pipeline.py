"""The pipeline pattern: examples/pipeline run end to end (static plan, typed handoffs)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.cli import main
from agentledger.settings import Settings
from agentledger.testing import run_goal

pytestmark = pytest.mark.integration

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "pipeline" / "workflow.yaml"
GOAL = "Summarise these expenses: taxi 23.50 eur; Hotel 180 EUR; lunch 14,20 eur; train 62 usd"
STEP = [
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "agent_output_produced",
    "subtask_completed",
]
EXPECTED_TYPES = ["goal_submitted", "task_planned", *STEP * 3, "task_completed"]
LINES = {"lines": ["taxi 23.50 eur", "Hotel 180 EUR", "lunch 14,20 eur", "train 62 usd"]}
EXPENSES = {
    "expenses": [
        {"item": "taxi", "amount": 23.5, "currency": "EUR"},
        {"item": "hotel", "amount": 180.0, "currency": "EUR"},
        {"item": "lunch", "amount": 14.2, "currency": "EUR"},
        {"item": "train", "amount": 62.0, "currency": "USD"},
    ]
}
SUMMARY = {
    "totals": {"EUR": 217.7, "USD": 62.0},
    "count": 4,
    "text": "4 expenses: 217.70 EUR, 62.00 USD.",
}


def check_events(events: list[dict]) -> None:
    """Order and content: planned without an LLM, then each agent gets its predecessor's output."""
    assert [e["type"] for e in events] == EXPECTED_TYPES
    planned = events[1]
    assert planned["causation_id"] == events[0]["event_id"]  # straight from the goal
    assert [s["id"] for s in planned["plan"]["subtasks"]] == ["extract", "normalise", "summarise"]
    assigned = [e for e in events if e["type"] == "subtask_assigned"]
    assert [(e["subtask_id"], e["agent"], e["inputs"]) for e in assigned] == [
        ("extract", "extractor", {}),
        ("normalise", "normaliser", {"extract": LINES}),
        ("summarise", "summariser", {"normalise": EXPENSES}),
    ]
    completed = [e for e in events if e["type"] == "subtask_completed"]
    assert [e["output"] for e in completed] == [LINES, EXPENSES, SUMMARY]
    # each handoff is caused by its predecessor's completion
    assert [a["causation_id"] for a in assigned[1:]] == [c["event_id"] for c in completed[:2]]
    assert events[-1]["result"] == SUMMARY and events[-1]["result_subtasks"] == ["summarise"]


async def test_pipeline_via_the_python_api(tmp_path: Path) -> None:
    wf = load_workflow(WORKFLOW, settings=Settings(home=tmp_path))
    assert wf.plan is not None and wf.agent("coordinator").routes_to
    runtime = build_runtime(wf, Settings(home=tmp_path))
    run = await run_goal(wf, {}, GOAL, runtime=runtime)
    assert run.state.status == "completed"
    assert "_plan" not in run.state.subtasks  # nobody was asked to plan
    assert run.state.llm_calls == 3
    check_events([e.model_dump(mode="json") for e in run.events])


def test_pipeline_via_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", str(WORKFLOW), "--goal", GOAL, "-o", str(tmp_path / "r.txt")], out=out, err=err
    )
    assert code == 0, err.getvalue()
    assert (tmp_path / "r.txt").read_text() == SUMMARY["text"] + "\n"
    task_id = out.getvalue().strip().splitlines()[-1].split()[1]
    out = io.StringIO()
    assert main(["events", task_id, "--json"], out=out, err=err) == 0
    check_events([json.loads(line) for line in out.getvalue().splitlines()])
