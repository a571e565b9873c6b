"""Failure policies: the exact events each decision produces, with the scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from agentledger.agents.workflow import AgentSpec, Limits, Workflow
from agentledger.errors import ModelError, WorkflowError
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, reply, reply_json
from agentledger.schemas import EventBase, Plan, RunningBranches
from agentledger.streams import MemoryEventLog
from agentledger.streams.log import Recorded
from agentledger.testing import run_goal
from tests.support.scripted_runs import plan


class Findings(BaseModel):
    summary: str


def workflow(
    *,
    researcher: dict[str, object] | None = None,
    writer: dict[str, object] | None = None,
    running: RunningBranches = "cancel",
    max_replans: int = 2,
) -> Workflow:
    return Workflow.build(
        name="policies",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("researcher", "writer")),
            AgentSpec(
                "researcher",
                output_model=Findings,
                routes_to=("writer",),
                **(researcher or {}),  # type: ignore[arg-type]
            ),
            AgentSpec("writer", **(writer or {})),  # type: ignore[arg-type]
        ],
        limits=Limits(max_replans=max_replans),
        running_branches_on_failure=running,
    )


def down() -> ModelError:
    return ModelError("backend down", kind="server_error")


PLANNING = [
    "goal_submitted",
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "agent_output_produced",
    "subtask_completed",
    "task_planned",
]
WORKS = ["subtask_assigned", "agent_step_started", "llm_call_completed"]
SUCCEEDS = [*WORKS, "agent_output_produced", "subtask_completed"]
FAILS = ["subtask_assigned", "agent_step_started", "llm_call_failed", "subtask_failed"]
FAILURE = "model 'scripted' failed for agent 'researcher': backend down"


async def test_retry_assigns_the_subtask_again_as_a_plan_override_says():
    model = ScriptedModel(
        {
            "planner": [
                plan({"id": "a", "agent": "researcher", "on_failure": "retry", "max_retries": 1})
            ],
            "researcher": [down(), reply_json({"summary": "found"})],
        }
    )
    run = await run_goal(workflow(), model, "g")
    model.assert_complete()
    assert run.types() == [*PLANNING, *FAILS, "failure_policy_applied", *SUCCEEDS, "task_completed"]
    (decision,) = run.of_type("failure_policy_applied")
    assert decision.model_dump(include={"subtask_id", "policy", "action", "attempt", "detail"}) == {
        "subtask_id": "a",
        "policy": "retry",
        "action": "retry",
        "attempt": 1,
        "detail": "retry 1 of 1",
    }
    assert (decision.error_kind, decision.reason) == ("llm_server_error", FAILURE)
    assert [e.attempt for e in run.of_type("subtask_assigned") if e.subtask_id == "a"] == [1, 2]
    assert run.state.result == {"summary": "found"}


async def test_retries_that_run_out_fail_the_task():
    model = ScriptedModel(
        {"planner": [plan({"id": "a", "agent": "researcher"})], "researcher": [down(), down()]}
    )
    run = await run_goal(workflow(researcher={"on_failure": "retry", "max_retries": 1}), model, "g")
    assert run.types() == [
        *PLANNING,
        *FAILS,
        "failure_policy_applied",
        *FAILS,
        "failure_policy_applied",
        "task_failed",
    ]
    first, last = run.of_type("failure_policy_applied")
    assert (first.action, first.attempt, first.detail) == ("retry", 1, "retry 1 of 1")
    assert (last.policy, last.action, last.attempt) == ("retry", "fail_task", 2)
    assert last.detail == "no retries left (1 of 1 used)"
    assert (last.running, last.running_branches) == ([], "cancel")
    (failed,) = run.of_type("task_failed")
    assert failed.reason == f"subtask a (researcher) failed: {FAILURE}"
    assert (failed.error_kind, failed.subtask_id) == ("llm_server_error", "a")


async def test_skip_hands_the_default_output_to_dependents():
    model = ScriptedModel(
        {
            "planner": [
                plan(
                    {"id": "a", "agent": "researcher"},
                    {"id": "w", "agent": "writer", "depends_on": ["a"]},
                )
            ],
            "researcher": [down()],
            "writer": [reply("brief without research")],
        }
    )
    wf = workflow(researcher={"on_failure": "skip", "default_output": {"summary": "none"}})
    run = await run_goal(wf, model, "g")
    assert run.types() == [
        *PLANNING,
        *FAILS,
        "failure_policy_applied",
        "subtask_skipped",
        *SUCCEEDS,
        "task_completed",
    ]
    decision, skipped = run.of_type("failure_policy_applied")[0], run.of_type("subtask_skipped")[0]
    assert (decision.policy, decision.action) == ("skip", "skip")
    assert (skipped.subtask_id, skipped.output, skipped.reason) == (
        "a",
        {"summary": "none"},
        FAILURE,
    )
    (assigned,) = [e for e in run.of_type("subtask_assigned") if e.subtask_id == "w"]
    assert assigned.inputs == {"a": {"summary": "none"}}
    assert run.state.subtasks["a"].status == "skipped"
    assert run.state.result == "brief without research"


def test_a_skip_default_that_breaks_the_output_contract_is_refused_at_load():
    with pytest.raises(WorkflowError, match=r"researcher.*default does not match Findings"):
        workflow(researcher={"on_failure": "skip"})


async def test_replan_gets_the_failure_and_completed_outputs_and_may_build_on_them():
    model = ScriptedModel(
        {
            "planner": [
                plan(
                    {"id": "a", "agent": "researcher"},
                    {"id": "b", "agent": "writer", "depends_on": ["a"]},
                ),
                plan({"id": "b", "agent": "writer", "depends_on": ["a"]}),  # reuses an id
                plan({"id": "c", "agent": "writer", "depends_on": ["a"]}),
            ],
            "researcher": [reply_json({"summary": "found"})],
            "writer": [ModelError("too long", kind="context_length"), reply("short brief")],
        }
    )
    run = await run_goal(workflow(writer={"on_failure": "replan"}), model, "g")
    model.assert_complete()
    replan = [*WORKS, "agent_output_produced", "subtask_completed"]
    assert run.types() == [
        *PLANNING,
        *SUCCEEDS,  # a
        *FAILS,  # b
        "failure_policy_applied",
        *replan,  # _replan1, attempt 1
        "plan_rejected",
        *replan,  # _replan1, attempt 2
        "task_planned",
        *SUCCEEDS,  # c
        "task_completed",
    ]
    (decision,) = run.of_type("failure_policy_applied")
    assert (decision.subtask_id, decision.action, decision.detail) == (
        "b",
        "replan",
        "re-plan 1 of 2",
    )
    asks = [e for e in run.of_type("subtask_assigned") if e.subtask_id == "_replan1"]
    assert asks[0].inputs == {
        "failed_subtask": "b",
        "failure": "model 'scripted' failed for agent 'writer': too long",
        "completed": {"a": {"summary": "found"}},
    }
    (rejected,) = run.of_type("plan_rejected")
    assert rejected.problems == [
        "subtask id 'b' is already used in this task: give new work a new id "
        "(completed subtasks are depended on by their id)"
    ]
    assert asks[1].attempt == 2 and asks[1].inputs["previous_plan_problems"] == rejected.problems
    (assigned,) = [e for e in run.of_type("subtask_assigned") if e.subtask_id == "c"]
    assert assigned.inputs == {"a": {"summary": "found"}}
    (done,) = run.of_type("task_completed")
    assert (done.result, done.result_subtasks) == ("short brief", ["c"])


async def test_replans_that_run_out_fail_the_task():
    model = ScriptedModel(
        {"planner": [plan({"id": "a", "agent": "researcher"})], "researcher": [down()]}
    )
    run = await run_goal(workflow(researcher={"on_failure": "replan"}, max_replans=0), model, "g")
    assert run.types() == [*PLANNING, *FAILS, "failure_policy_applied", "task_failed"]
    (decision,) = run.of_type("failure_policy_applied")
    assert (decision.policy, decision.action) == ("replan", "fail_task")
    assert decision.detail == "no re-plans left (0 of 0 used)"


class GatedLog(MemoryEventLog):
    """A log that opens a gate once an event of one type has been appended."""

    def __init__(self, opens_on: str) -> None:
        super().__init__()
        self.opens_on = opens_on
        self.gate = asyncio.Event()

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        recorded = await super().append(events)
        if any(e.event_type == self.opens_on for e in events):
            self.gate.set()
        return recorded


PARALLEL = plan(
    {"id": "a", "agent": "researcher"},
    {"id": "b", "agent": "researcher"},
    {"id": "w", "agent": "writer", "depends_on": ["b"]},
)


def gated_model(gate: asyncio.Event) -> ScriptedModel:
    """The planner plans a, b and w; ``a`` fails at once, ``b`` answers once the gate opens."""

    async def respond(request: ModelRequest) -> ModelResponse:
        if request.agent == "planner":
            return PARALLEL
        if request.subtask_id == "a":
            raise down()
        await gate.wait()
        return reply_json({"summary": "b finished"})

    return ScriptedModel(respond)


async def test_fail_task_cancels_running_branches_by_default():
    log = GatedLog(opens_on="never")
    model = gated_model(log.gate)
    run = await run_goal(workflow(), model, "g", log=log)
    assert run.types("a") == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_failed",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    assert run.types("b") == ["subtask_assigned", "agent_step_started"]  # cancelled mid-call
    assert run.types()[-2:] == ["failure_policy_applied", "task_failed"]
    (decision,) = run.of_type("failure_policy_applied")
    assert (decision.action, decision.running, decision.running_branches) == (
        "fail_task",
        ["b"],
        "cancel",
    )
    assert decision.detail == "the subtask is required; running branches: cancel"
    assert run.state.status == "failed"


async def test_fail_task_can_let_running_branches_finish_first():
    log = GatedLog(opens_on="failure_policy_applied")
    model = gated_model(log.gate)
    run = await run_goal(workflow(running="finish"), model, "g", log=log)
    tail = run.types()[run.types().index("subtask_failed") :]
    assert tail == [
        "subtask_failed",
        "failure_policy_applied",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
        "task_failed",
    ]
    (decision,) = run.of_type("failure_policy_applied")
    assert (decision.running, decision.running_branches) == (["b"], "finish")
    # b's output is kept; w, which depends on it, was not started: the task is failing
    assert run.state.subtasks["b"].output == {"summary": "b finished"}
    assert run.types("w") == []
    (failed,) = run.of_type("task_failed")
    assert failed.reason == f"subtask a (researcher) failed: {FAILURE}"
    assert failed.causation_id == run.of_type("subtask_completed")[-1].event_id


async def test_a_failure_inside_a_nested_plan_fails_the_parent_whose_policy_decides():
    wf = Workflow.build(
        name="nested",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("lead", "writer")),
            AgentSpec(
                "lead",
                orchestrates=True,
                routes_to=("researcher", "writer"),
                on_failure="skip",
                default_output="no research",
            ),
            AgentSpec("researcher", output_model=Findings),
            AgentSpec("writer"),
        ],
    )
    model = ScriptedModel(
        {
            "planner": [
                plan(
                    {"id": "r", "agent": "lead"},
                    {"id": "w", "agent": "writer", "depends_on": ["r"]},
                )
            ],
            "lead": [plan({"id": "a", "agent": "researcher"})],
            "researcher": [down()],
            "writer": [reply("brief")],
        }
    )
    run = await run_goal(wf, model, "g")
    model.assert_complete()
    assert run.types("r/a") == [*FAILS, "failure_policy_applied"]
    assert run.types("r") == [
        "subtask_assigned",
        "subtask_planned",
        "subtask_failed",
        "failure_policy_applied",
        "subtask_skipped",
    ]
    inner, outer = run.of_type("failure_policy_applied")
    assert (inner.subtask_id, inner.policy, inner.action) == ("r/a", "fail_task", "fail_parent")
    assert inner.detail == "the subtask is required; r fails"
    (parent_failed,) = [e for e in run.of_type("subtask_failed") if e.subtask_id == "r"]
    assert parent_failed.reason == f"subtask r/a (researcher) failed: {FAILURE}"
    assert (outer.subtask_id, outer.policy, outer.action) == ("r", "skip", "skip")
    (assigned,) = [e for e in run.of_type("subtask_assigned") if e.subtask_id == "w"]
    assert assigned.inputs == {"r": "no research"}
    assert run.state.result == "brief"


async def test_a_static_plan_runs_without_planning_and_can_still_be_replanned():
    static = Plan.model_validate(
        {"subtasks": [{"id": "a", "agent": "researcher", "on_failure": "replan"}]}
    )
    wf = Workflow.build(
        name="static",
        orchestrator="planner",
        agents=[AgentSpec("planner", routes_to=("researcher",)), AgentSpec("researcher")],
        plan=static,
    )
    model = ScriptedModel(
        {
            "researcher": [down(), reply("second try")],
            "planner": [plan({"id": "b", "agent": "researcher"})],
        }
    )
    run = await run_goal(wf, model, "g")
    model.assert_complete()
    assert run.types() == [
        "goal_submitted",
        "task_planned",
        *FAILS,
        "failure_policy_applied",
        *SUCCEEDS,  # _replan1: the orchestrator is asked only now
        "task_planned",
        *SUCCEEDS,
        "task_completed",
    ]
    first, second = run.of_type("task_planned")
    assert [s.id for s in second.plan.subtasks] == ["b"]
    assert first.causation_id == run.events[0].event_id and first.plan == static
    (decision,) = run.of_type("failure_policy_applied")
    assert decision.detail == "re-plan 1 of 2"
    ask = next(e for e in run.of_type("subtask_assigned") if e.subtask_id == "_replan1")
    assert ask.description.startswith("Re-plan after subtask 'a' failed. Plan this goal: g.")
    assert ask.inputs == {
        "failed_subtask": "a",
        "failure": "model 'scripted' failed for agent 'researcher': backend down",
        "completed": {},
    }
    assert run.state.result == "second try"


def test_a_static_plan_is_checked_against_the_graph_at_load():
    bad = Plan.model_validate(
        {
            "subtasks": [
                {"id": "w", "agent": "writer", "depends_on": ["r"]},
                {"id": "r", "agent": "ghost"},
            ]
        }
    )
    with pytest.raises(WorkflowError) as info:
        Workflow.build(
            name="static",
            orchestrator="planner",
            agents=[AgentSpec("planner", routes_to=("writer",)), AgentSpec("writer")],
            plan=bad,
        )
    assert info.value.problems == [
        "plan: subtask 'r': no agent named 'ghost' exists in this workflow"
    ]
