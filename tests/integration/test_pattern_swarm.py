"""Swarm: examples/swarm run end to end with each aggregation method, ties, a judge that
names no candidate, and a field nobody has, with the exact events.

The three solvers run concurrently, so their events interleave in any order; each
subtask's own events, the planning before them and the aggregation after them are exact.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentledger._imports import load_object
from agentledger.agents.aggregate import AggregateSpec
from agentledger.agents.workflow import Workflow, load_workflow
from agentledger.cli import main
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, reply_json
from agentledger.schemas import OutputRejected, OutputsAggregated, SubtaskFailed, Vote
from agentledger.settings import Settings
from agentledger.testing import RunResult, run_goal

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "swarm"
GOAL = (
    "Checkout fails for 30% of customers in the EU since 09:10: card payments time out. "
    "No data loss seen; on-call paged."
)
SOLVERS = ["impact", "data", "urgency"]
Respond = Callable[[ModelRequest], ModelResponse]

IMPACT = {
    "lens": "impact",
    "severity": "sev1",
    "score": 8.0,
    "evidence": ["customers", "checkout", "fails"],
}
DATA = {"lens": "data", "severity": "sev3", "score": 2.0, "evidence": ["card"]}
URGENCY = {
    "lens": "urgency",
    "severity": "sev1",
    "score": 8.0,
    "evidence": ["time out", "fails", "paged", "since"],
}

PLANNING = [
    "goal_submitted",
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "agent_output_produced",
    "subtask_completed",
    "task_planned",
    "subtask_assigned",
    "subtask_assigned",
    "subtask_assigned",
]
SOLVER_TURN = [
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "agent_output_produced",
    "subtask_completed",
]


def load(tmp_path: Path, name: str) -> Workflow:
    return load_workflow(EXAMPLE / name, settings=Settings(home=tmp_path))


@pytest.fixture
def respond() -> Respond:
    fn: Respond = load_object("swarm_model:respond", base_dir=EXAMPLE, what="model")
    return fn


async def run(workflow: Workflow, respond: Respond) -> RunResult:
    return await run_goal(workflow, ScriptedModel(respond), GOAL)


def check_planning_and_solvers(result: RunResult, tail_from: int) -> None:
    """The plan comes first, then the three solvers (interleaved), each a plain turn."""
    assert result.types()[: len(PLANNING)] == PLANNING
    for sid in SOLVERS:
        assert result.types(sid) == SOLVER_TURN
    solver_events = [e for e in result.events if getattr(e, "subtask_id", None) in SOLVERS]
    assert len(PLANNING) + len(solver_events) - 3 == tail_from  # 3 assignments are in PLANNING
    last_solver_done = result.events[tail_from - 1]
    assert last_solver_done.type == "subtask_completed"
    assert getattr(last_solver_done, "subtask_id", None) in SOLVERS
    # The aggregator is assigned by the last solver to finish, with every candidate's output.
    combine = result.events[tail_from]
    assert combine.type == "subtask_assigned"
    assert combine.causation_id == last_solver_done.event_id
    assert getattr(combine, "inputs", None) == {"impact": IMPACT, "data": DATA, "urgency": URGENCY}
    assert getattr(combine, "depends_on", None) == SOLVERS


async def test_majority_vote_needs_no_llm_call_and_the_first_of_the_majority_wins(
    tmp_path: Path, respond: Respond
):
    result = await run(load(tmp_path, "workflow.yaml"), respond)

    tail = len(PLANNING) + 3 * 4
    check_planning_and_solvers(result, tail)
    assert [(e.type, e.agent) for e in result.events[tail:]] == [
        ("subtask_assigned", "aggregator"),
        ("outputs_aggregated", "aggregator"),
        ("subtask_completed", "aggregator"),
        ("task_completed", "planner"),
    ]
    aggregated = result.events[tail + 1]
    assert isinstance(aggregated, OutputsAggregated)
    assert aggregated.causation_id == result.events[tail].event_id
    assert aggregated.model_dump(
        include={
            "subtask_id",
            "method",
            "field",
            "candidates",
            "values",
            "votes",
            "winner",
            "result",
            "detail",
        }
    ) == {
        "subtask_id": "combine",
        "method": "majority_vote",
        "field": "severity",
        "candidates": SOLVERS,
        "values": {"impact": "sev1", "data": "sev3", "urgency": "sev1"},
        "votes": [
            {"value": "sev1", "count": 2, "candidates": ["impact", "urgency"]},
            {"value": "sev3", "count": 1, "candidates": ["data"]},
        ],
        "winner": "impact",
        "result": IMPACT,
        "detail": '2 of 3 votes for "sev1"',
    }
    assert result.state.status == "completed"
    assert result.state.result == IMPACT
    assert result.state.llm_calls == 4  # planner and three solvers; the vote asks no model


async def test_the_judge_picks_a_candidate_with_one_llm_call(tmp_path: Path, respond: Respond):
    result = await run(load(tmp_path, "workflow_judge.yaml"), respond)

    tail = len(PLANNING) + 3 * 4
    check_planning_and_solvers(result, tail)
    assert result.types()[tail:] == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "outputs_aggregated",
        "subtask_completed",
        "task_completed",
    ]
    verdict = result.events[tail + 3]
    assert getattr(verdict, "output", None) == {
        "best": "urgency",
        "reason": "urgency rests on the most evidence: time out, fails, paged, since",
    }
    assert getattr(verdict, "output_model", None) == "JudgeVerdict"
    aggregated = result.events[tail + 4]
    assert isinstance(aggregated, OutputsAggregated)
    assert (aggregated.method, aggregated.field, aggregated.candidates) == ("judge", None, SOLVERS)
    assert (aggregated.winner, aggregated.result, aggregated.votes, aggregated.values) == (
        "urgency",
        URGENCY,
        [],
        {},
    )
    assert aggregated.detail == "urgency rests on the most evidence: time out, fails, paged, since"
    assert result.state.result == URGENCY


async def test_a_judge_naming_no_candidate_is_rejected_and_repairs(
    tmp_path: Path, respond: Respond
):
    answers = iter([{"best": "solver-4", "reason": "made up"}])

    def judge_invents_once(request: ModelRequest) -> ModelResponse:
        if request.agent == "aggregator":
            wrong = next(answers, None)
            if wrong is not None:
                return reply_json(wrong)
        return respond(request)

    result = await run(load(tmp_path, "workflow_judge.yaml"), judge_invents_once)

    assert result.types("combine") == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "output_rejected",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "outputs_aggregated",
        "subtask_completed",
    ]
    [rejected] = result.of_type("output_rejected")
    assert isinstance(rejected, OutputRejected)
    assert rejected.errors == [
        "best: 'solver-4' is not a candidate; answer with one of ['impact', 'data', 'urgency']"
    ]
    assert rejected.will_retry is True
    assert result.state.result == URGENCY


async def test_score_average_combines_a_numeric_field(tmp_path: Path, respond: Respond):
    result = await run(load(tmp_path, "workflow_average.yaml"), respond)

    tail = len(PLANNING) + 3 * 4
    check_planning_and_solvers(result, tail)
    assert result.types()[tail:] == [
        "subtask_assigned",
        "outputs_aggregated",
        "subtask_completed",
        "task_completed",
    ]
    aggregated = result.events[tail + 1]
    assert isinstance(aggregated, OutputsAggregated)
    assert (aggregated.method, aggregated.field, aggregated.winner) == (
        "score_average",
        "score",
        None,
    )
    assert aggregated.values == {"impact": 8.0, "data": 2.0, "urgency": 8.0}
    assert aggregated.result == {"score": 6.0, "count": 3}
    assert aggregated.detail == "mean of 3 values: 6"
    assert result.state.result == {"score": 6.0, "count": 3}


def severities(respond: Respond, by_lens: dict[str, str]) -> Respond:
    """The example's model, with the severity each lens reports replaced."""

    def fn(request: ModelRequest) -> ModelResponse:
        response = respond(request)
        if request.agent != "solver":
            return response
        answer = json.loads(response.content or "")
        answer["severity"] = by_lens[answer["lens"]]
        return reply_json(answer)

    return fn


async def test_a_tied_vote_goes_to_the_value_given_first(tmp_path: Path, respond: Respond):
    tie = severities(respond, {"impact": "sev2", "data": "sev1", "urgency": "sev3"})
    result = await run(load(tmp_path, "workflow.yaml"), tie)

    [aggregated] = result.of_type("outputs_aggregated")
    assert isinstance(aggregated, OutputsAggregated)
    assert aggregated.votes == [
        Vote(value="sev2", count=1, candidates=["impact"]),
        Vote(value="sev1", count=1, candidates=["data"]),
        Vote(value="sev3", count=1, candidates=["urgency"]),
    ]
    assert aggregated.winner == "impact"
    assert (
        aggregated.detail
        == '1 of 3 votes for "sev2"; a tie of 3 values, won by the one given first (by impact)'
    )
    assert result.state.result == {**IMPACT, "severity": "sev2"}


async def test_a_two_way_tie_after_a_majority_keeps_the_plan_order(
    tmp_path: Path, respond: Respond
):
    later_majority = severities(respond, {"impact": "sev3", "data": "sev2", "urgency": "sev2"})
    result = await run(load(tmp_path, "workflow.yaml"), later_majority)

    [aggregated] = result.of_type("outputs_aggregated")
    assert isinstance(aggregated, OutputsAggregated)
    assert (aggregated.winner, aggregated.detail) == ("data", '2 of 3 votes for "sev2"')
    assert result.state.result == {**DATA, "severity": "sev2"}


async def test_no_candidate_with_the_field_fails_the_aggregation_clearly(
    tmp_path: Path, respond: Respond
):
    wf = load(tmp_path, "workflow.yaml")
    aggregator = dataclasses.replace(
        wf.agents["aggregator"], aggregate=AggregateSpec(method="majority_vote", field="verdict")
    )
    wf = dataclasses.replace(wf, agents={**wf.agents, "aggregator": aggregator})
    result = await run(wf, respond)

    expected = ["subtask_assigned", "subtask_failed", "failure_policy_applied", "task_failed"]
    assert result.types("combine") == expected
    assert result.types()[-4:] == expected
    [failed] = result.of_type("subtask_failed")
    assert isinstance(failed, SubtaskFailed)
    assert failed.error_kind == "aggregation_failed"
    assert failed.reason == (
        "none of the candidates ['impact', 'data', 'urgency'] has the field 'verdict' to vote on"
    )
    assert result.state.failure == f"subtask combine (aggregator) failed: {failed.reason}"


def test_the_cli_runs_the_swarm_and_shows_the_aggregation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", str(EXAMPLE / "workflow_judge.yaml"), "--goal", GOAL], out=out, err=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "combine judge over impact, data, urgency: winner urgency" in text
    task_id = text.strip().splitlines()[-1].split()[1]

    out = io.StringIO()
    assert main(["events", task_id, "--json"], out=out, err=err) == 0
    events: list[dict[str, Any]] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["type"] for e in events[-4:]] == [
        "agent_output_produced",
        "outputs_aggregated",
        "subtask_completed",
        "task_completed",
    ]
    assert (events[-3]["winner"], events[-1]["result"]) == ("urgency", URGENCY)
