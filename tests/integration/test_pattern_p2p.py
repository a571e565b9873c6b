"""Peer-to-peer: examples/peer_to_peer run end to end, and every way a handoff is refused
or a runaway is stopped, with the exact events.

Real components: the example's workflow file and its offline model, an in-memory log for
the API runs and a SQLite ledger for the CLI run. Misbehaving variants wrap the example's
model so that one agent says something wrong; everything else stays the example's.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agentledger._imports import load_object
from agentledger.agents.workflow import AgentSpec, Workflow, load_workflow
from agentledger.cli import main
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, reply_json
from agentledger.schemas import (
    Event,
    HandoffAccepted,
    HandoffRejected,
    LimitReached,
    SubtaskAssigned,
    SubtaskCompleted,
    TaskFailed,
)
from agentledger.settings import Settings
from agentledger.testing import RunResult, run_goal

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "peer_to_peer"
GOAL = "I cannot log in since yesterday, the password reset does nothing"
Respond = Callable[[ModelRequest], ModelResponse]


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    return load_workflow(EXAMPLE / "workflow.yaml", settings=Settings(home=tmp_path))


@pytest.fixture
def respond() -> Respond:
    fn: Respond = load_object("support_model:respond", base_dir=EXAMPLE, what="model")
    return fn


def brief(e: Event) -> tuple[Any, ...]:
    """What an event says, in a few fields, for comparing whole runs."""
    match e:
        case HandoffAccepted():
            return (e.type, e.from_agent, e.to_agent, e.hop)
        case HandoffRejected():
            return (e.type, e.from_agent, e.to_agent, e.error_kind, e.will_retry)
        case LimitReached():
            return (e.type, e.limit, e.value, e.threshold)
        case TaskFailed():
            return (e.type, e.error_kind)
    return (e.type, e.agent, getattr(e, "subtask_id", None))


def turn(agent: str, sub: str) -> list[tuple[Any, ...]]:
    """One agent's uneventful turn: assigned, one step, one answer, completed."""
    return [
        ("subtask_assigned", agent, sub),
        ("agent_step_started", agent, sub),
        ("llm_call_completed", agent, sub),
        ("agent_output_produced", agent, sub),
        ("subtask_completed", agent, sub),
    ]


def triage_says(respond: Respond, *wrong_targets: str) -> Respond:
    """The example's model, except that triage first hands off to ``wrong_targets``."""
    wrong = list(wrong_targets)

    def fn(request: ModelRequest) -> ModelResponse:
        right = respond(request)
        if request.agent == "triage" and wrong:
            answer = json.loads(right.content or "")
            answer["handoff"]["to"] = wrong.pop(0)
            return reply_json(answer)
        return right

    return fn


def reviewer_never_approves(respond: Respond) -> Respond:
    def fn(request: ModelRequest) -> ModelResponse:
        answer = json.loads(respond(request).content or "")
        if request.agent == "reviewer" and answer["approved"]:
            answer.update(approved=False, issues=["too terse"])
            answer["handoff"] = {"to": "specialist", "note": "Rework the reply: too terse"}
        return reply_json(answer)

    return fn


async def run(workflow: Workflow, respond: Respond) -> RunResult:
    return await run_goal(workflow, ScriptedModel(respond), GOAL)


async def test_the_example_hands_work_along_its_routes_with_one_rework(
    workflow: Workflow, respond: Respond
):
    result = await run(workflow, respond)

    assert [brief(e) for e in result.events] == [
        ("goal_submitted", None, None),
        *turn("triage", "triage-1"),
        ("handoff_accepted", "triage", "specialist", 1),
        *turn("specialist", "specialist-2"),
        ("handoff_accepted", "specialist", "reviewer", 2),
        *turn("reviewer", "reviewer-3"),
        ("handoff_accepted", "reviewer", "specialist", 3),
        *turn("specialist", "specialist-4"),
        ("handoff_accepted", "specialist", "reviewer", 4),
        *turn("reviewer", "reviewer-5"),
        ("task_completed", "reviewer", None),
    ]
    assert result.state.status == "completed"
    assert result.state.handoffs.path() == [
        "triage",
        "specialist",
        "reviewer",
        "specialist",
        "reviewer",
    ]

    # The goal goes to the entry agent; each receiver gets exactly the sender's answer
    # (without the handoff) as its input, and the note as its description.
    assigned = [e for e in result.events if isinstance(e, SubtaskAssigned)]
    assert (assigned[0].subtask_id, assigned[0].description, assigned[0].inputs) == (
        "triage-1",
        GOAL,
        {},
    )
    completed = {e.subtask_id: e for e in result.events if isinstance(e, SubtaskCompleted)}
    accepted = [e for e in result.events if isinstance(e, HandoffAccepted)]
    for hop, receiver in zip(accepted, assigned[1:], strict=True):
        sent = completed[hop.from_subtask]
        assert hop.causation_id == sent.event_id
        assert receiver.causation_id == sent.event_id
        assert isinstance(sent.output, dict)
        assert hop.note == sent.output["handoff"]["note"]
        assert (receiver.subtask_id, receiver.agent, receiver.depends_on) == (
            hop.to_subtask,
            hop.to_agent,
            [hop.from_subtask],
        )
        assert receiver.description == hop.note
        assert receiver.inputs == {
            hop.from_subtask: {k: v for k, v in sent.output.items() if k != "handoff"}
        }
    assert (accepted[2].from_subtask, accepted[2].to_subtask) == ("reviewer-3", "specialist-4")
    assert accepted[2].note == (
        "Rework the reply: fewer than 3 steps: give the customer more to try; "
        "no escalation path: tell the customer how to reach a person"
    )

    # An answer without a handoff ends the task with that answer, as the contract has it.
    final = result.state.result
    assert isinstance(final, dict)
    assert final == completed["reviewer-5"].output
    assert "handoff" not in final
    assert (final["approved"], final["issues"], final["revision"]) == (True, [], 2)
    assert len(final["steps"]) == 3
    assert final["reply"].endswith("reply to this message and a person will take over.")
    assert workflow.present(final) == final["reply"]


async def test_a_handoff_along_an_undeclared_route_is_refused_and_the_agent_corrects_it(
    workflow: Workflow, respond: Respond
):
    result = await run(workflow, triage_says(respond, "reviewer"))

    assert [brief(e) for e in result.events][:12] == [
        ("goal_submitted", None, None),
        ("subtask_assigned", "triage", "triage-1"),
        ("agent_step_started", "triage", "triage-1"),
        ("llm_call_completed", "triage", "triage-1"),
        ("handoff_rejected", "triage", "reviewer", "undeclared_route", True),
        ("agent_step_started", "triage", "triage-1"),
        ("llm_call_completed", "triage", "triage-1"),
        ("agent_output_produced", "triage", "triage-1"),
        ("subtask_completed", "triage", "triage-1"),
        ("handoff_accepted", "triage", "specialist", 1),
        ("subtask_assigned", "specialist", "specialist-2"),
        ("agent_step_started", "specialist", "specialist-2"),
    ]
    assert result.state.status == "completed"
    [rejected] = result.of_type("handoff_rejected")
    assert isinstance(rejected, HandoffRejected)
    assert (rejected.subtask_id, rejected.rejection) == ("triage-1", 1)
    assert rejected.reason == (
        "the graph declares no route triage -> reviewer; triage may hand off to: specialist"
    )
    # The agent is told why, in the step that follows, and answers again.
    retry = result.events[5]
    assert retry.type == "agent_step_started"
    assert retry.causation_id == rejected.causation_id
    assert getattr(retry, "iteration", None) == 2
    assert getattr(retry, "feedback", None) == (
        "Your handoff to 'reviewer' was refused: the graph declares no route triage -> "
        "reviewer; triage may hand off to: specialist. Answer again: hand off to one of "
        'those agents, or leave "handoff" out to finish with your answer.'
    )
    # The refused answer never became an output: no subtask was created for it.
    assert "reviewer-2" not in result.state.subtasks


async def test_a_handoff_to_an_agent_the_llm_invented_is_refused(
    workflow: Workflow, respond: Respond
):
    result = await run(workflow, triage_says(respond, "billing_expert"))

    [rejected] = result.of_type("handoff_rejected")
    assert isinstance(rejected, HandoffRejected)
    assert brief(rejected) == (
        "handoff_rejected",
        "triage",
        "billing_expert",
        "unknown_agent",
        True,
    )
    assert rejected.reason == (
        "there is no agent named 'billing_expert'; triage may hand off to: specialist"
    )
    assert result.state.status == "completed"
    assert "billing_expert" not in {s.agent for s in result.state.subtasks.values()}
    assert result.state.handoffs.path()[:2] == ["triage", "specialist"]


async def test_refused_handoffs_are_bounded_then_the_subtask_and_task_fail(
    workflow: Workflow, respond: Respond
):
    result = await run(workflow, triage_says(respond, "billing", "billing", "billing"))

    refused = ("handoff_rejected", "triage", "billing", "unknown_agent")
    assert [brief(e) for e in result.events] == [
        ("goal_submitted", None, None),
        ("subtask_assigned", "triage", "triage-1"),
        ("agent_step_started", "triage", "triage-1"),
        ("llm_call_completed", "triage", "triage-1"),
        (*refused, True),
        ("agent_step_started", "triage", "triage-1"),
        ("llm_call_completed", "triage", "triage-1"),
        (*refused, True),
        ("agent_step_started", "triage", "triage-1"),
        ("llm_call_completed", "triage", "triage-1"),
        (*refused, False),
        ("subtask_failed", "triage", "triage-1"),
        ("task_failed", "invalid_handoff"),
    ]
    assert [getattr(e, "rejection", None) for e in result.of_type("handoff_rejected")] == [1, 2, 3]
    failed = result.events[-1]
    assert isinstance(failed, TaskFailed)
    assert failed.reason == (
        "subtask triage-1 (triage) failed: triage handed off outside the graph 3 times; "
        "last: there is no agent named 'billing'; triage may hand off to: specialist"
    )
    assert result.state.status == "failed"


async def test_work_bouncing_between_two_agents_is_stopped_as_an_oscillation(
    workflow: Workflow, respond: Respond
):
    result = await run(workflow, reviewer_never_approves(respond))

    assert [brief(e) for e in result.events][-8:] == [
        ("handoff_accepted", "specialist", "reviewer", 4),
        ("subtask_assigned", "reviewer", "reviewer-5"),
        ("agent_step_started", "reviewer", "reviewer-5"),
        ("llm_call_completed", "reviewer", "reviewer-5"),
        ("agent_output_produced", "reviewer", "reviewer-5"),
        ("subtask_completed", "reviewer", "reviewer-5"),
        ("limit_reached", "oscillation", 2.0, 2.0),
        ("task_failed", "oscillation"),
    ]
    assert [brief(e) for e in result.of_type("handoff_accepted")] == [
        ("handoff_accepted", "triage", "specialist", 1),
        ("handoff_accepted", "specialist", "reviewer", 2),
        ("handoff_accepted", "reviewer", "specialist", 3),
        ("handoff_accepted", "specialist", "reviewer", 4),
    ]
    limit, failed = result.events[-2:]
    assert isinstance(limit, LimitReached)
    assert (limit.scope, limit.severity, limit.subtask_id, limit.agent) == (
        "task",
        "stop",
        "reviewer-5",
        "reviewer",
    )
    detail = (
        "specialist -> reviewer -> specialist -> reviewer -> specialist: specialist and "
        "reviewer handed the work back and forth 2 times"
    )
    assert limit.detail == detail
    assert isinstance(failed, TaskFailed)
    assert (failed.reason, failed.subtask_id) == (f"oscillation limit: {detail}", "reviewer-5")
    assert result.state.status == "failed"
    assert "specialist-6" not in result.state.subtasks


async def test_the_total_number_of_handoffs_is_capped(workflow: Workflow, respond: Respond):
    capped = dataclasses.replace(
        workflow, limits=workflow.limits.model_copy(update={"max_handoffs": 3})
    )
    result = await run(capped, respond)

    assert [brief(e) for e in result.events][-4:] == [
        ("agent_output_produced", "specialist", "specialist-4"),
        ("subtask_completed", "specialist", "specialist-4"),
        ("limit_reached", "handoffs", 4.0, 3.0),
        ("task_failed", "handoff_limit"),
    ]
    assert len(result.of_type("handoff_accepted")) == 3
    limit = result.events[-2]
    assert isinstance(limit, LimitReached)
    assert limit.detail == "specialist -> reviewer would be handoff 4"
    assert result.state.failure == "handoffs limit: specialist -> reviewer would be handoff 4"


def test_the_cli_runs_the_example_and_the_ledger_holds_the_handoffs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", str(EXAMPLE / "workflow.yaml"), "--goal", GOAL], out=out, err=err)
    assert code == 0, err.getvalue()
    text = out.getvalue()
    assert "1. Reset your password from the sign-in page" in text
    assert "handoff 3: reviewer -> specialist (reviewer-3 -> specialist-4)" in text
    task_id = text.strip().splitlines()[-1].split()[1]

    out = io.StringIO()
    assert main(["events", task_id, "--json"], out=out, err=err) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    hops = [
        (e["from_agent"], e["to_agent"], e["hop"])
        for e in events
        if e["type"] == "handoff_accepted"
    ]
    assert hops == [
        ("triage", "specialist", 1),
        ("specialist", "reviewer", 2),
        ("reviewer", "specialist", 3),
        ("specialist", "reviewer", 4),
    ]
    assert events[-1]["type"] == "task_completed"

    out = io.StringIO()
    assert main(["status", task_id], out=out, err=err) == 0
    assert "handoffs  triage -> specialist -> reviewer -> specialist -> reviewer" in out.getvalue()


class Ticket(BaseModel):
    handoff: str  # an ordinary field outside peer_to_peer workflows


async def test_handoff_is_an_ordinary_field_name_in_orchestrated_workflows():
    wf = Workflow.build(
        name="plain",
        orchestrator="planner",
        agents=[
            AgentSpec(name="planner", routes_to=("clerk",)),
            AgentSpec(name="clerk", output_model=Ticket),
        ],
    )
    model = ScriptedModel(
        {
            "planner": [reply_json({"subtasks": [{"id": "file", "agent": "clerk"}]})],
            "clerk": [reply_json({"handoff": "to the archive"})],
        }
    )
    result = await run_goal(wf, model, "file the ticket")

    assert result.state.status == "completed"
    assert result.state.result == {"handoff": "to the archive"}
    assert result.of_type("handoff_accepted") == result.of_type("handoff_rejected") == []
