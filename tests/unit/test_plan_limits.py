"""Plans cannot widen policy, and task-wide ceilings hold: exact events, scripted model."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from agentledger.agents.workflow import AgentSpec, Limits, Workflow, load_workflow
from agentledger.errors import ModelError
from agentledger.llm import ModelPrice, ModelResponse, ScriptedModel, reply_json
from agentledger.schemas import PlanClamp
from agentledger.settings import Settings
from agentledger.testing import run_goal


class Findings(BaseModel):
    summary: str


def workflow(limits: Limits | None = None, **researcher: object) -> Workflow:
    return Workflow.build(
        name="bounded",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("researcher",)),
            AgentSpec("researcher", output_model=Findings, **researcher),  # type: ignore[arg-type]
        ],
        limits=limits,
    )


def plan(**subtask: object) -> ModelResponse:
    return reply_json({"subtasks": [{"id": "a", "agent": "researcher", **subtask}]})


def down() -> ModelError:
    return ModelError("backend down", kind="server_error")


PLANNING = [
    "goal_submitted",
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "agent_output_produced",
    "subtask_completed",
]
FAILS = ["subtask_assigned", "agent_step_started", "llm_call_failed", "subtask_failed"]


async def test_a_plan_asking_for_40_retries_gets_the_agents_2():
    model = ScriptedModel(
        {
            "planner": [plan(on_failure="retry", max_retries=40)],
            "researcher": [down(), down(), down()],
        }
    )

    run = await run_goal(workflow(max_retries=2), model, "g")

    model.assert_complete()  # exactly 1 + 3 calls: the plan, the first try, 2 retries
    assert run.types() == [
        *PLANNING,
        "plan_clamped",
        "task_planned",
        *FAILS,
        "failure_policy_applied",
        *FAILS,
        "failure_policy_applied",
        *FAILS,
        "failure_policy_applied",
        "task_failed",
    ]
    (clamped,) = run.of_type("plan_clamped")
    assert clamped.subtask_id == "" and clamped.agent == "planner"
    assert clamped.clamps == [
        PlanClamp(
            subtask="a",
            setting="max_retries",
            asked=40,
            allowed=2,
            reason="agent 'researcher' allows at most 2 retries",
        )
    ]
    (planned,) = run.of_type("task_planned")
    assert planned.plan.subtasks[0].max_retries == 2  # the recorded plan is the clamped one
    assert run.of_type("failure_policy_applied")[-1].detail == "no retries left (2 of 2 used)"
    assert run.state.llm_calls == 4


async def test_a_policy_the_workflow_does_not_allow_is_replaced_by_the_agents_own():
    model = ScriptedModel(
        {
            "planner": [plan(on_failure="skip", default={"summary": "none"})],
            "researcher": [down()],
        }
    )

    run = await run_goal(workflow(plan_on_failure=("fail_task", "retry")), model, "g")

    model.assert_complete()
    (clamped,) = run.of_type("plan_clamped")
    assert [(c.setting, c.asked, c.allowed) for c in clamped.clamps] == [
        ("on_failure", "skip", "fail_task"),
        ("default", {"summary": "none"}, None),
    ]
    assert "only fail_task, retry" in clamped.clamps[0].reason
    (decision,) = run.of_type("failure_policy_applied")
    assert (decision.policy, decision.action) == ("fail_task", "fail_task")
    assert run.types()[-1] == "task_failed"


async def test_a_plan_within_bounds_is_recorded_without_a_clamp():
    model = ScriptedModel(
        {
            "planner": [plan(on_failure="retry", max_retries=1)],
            "researcher": [reply_json({"summary": "found"})],
        }
    )

    run = await run_goal(workflow(max_retries=2), model, "g")

    assert run.of_type("plan_clamped") == []
    assert run.types()[-1] == "task_completed"


async def test_the_task_wide_llm_call_ceiling_holds_against_retries():
    model = ScriptedModel({"planner": [plan()], "researcher": [down(), down()]})
    wf = workflow(Limits(max_llm_calls=3), on_failure="retry", max_retries=10)

    run = await run_goal(wf, model, "g")

    model.assert_complete()  # the 4th call was never made
    assert run.types()[-4:] == [
        "subtask_assigned",
        "agent_step_started",
        "limit_reached",
        "task_failed",
    ]
    (limit,) = run.of_type("limit_reached")
    assert (limit.limit, limit.scope, limit.severity, limit.value, limit.threshold) == (
        "llm_calls",
        "task",
        "stop",
        4,
        3,
    )
    (failed,) = run.of_type("task_failed")
    assert failed.error_kind == "llm_call_ceiling"
    assert failed.reason == "task ceiling reached: 3 of 3 LLM calls used (limits.max_llm_calls)"
    assert run.state.llm_calls == 3


async def test_the_task_wide_event_ceiling_holds_against_retries():
    model = ScriptedModel({"planner": [plan()], "researcher": [down(), down()]})
    wf = workflow(Limits(max_events=16), on_failure="retry", max_retries=10)

    run = await run_goal(wf, model, "g")

    model.assert_complete()
    # Checked before each model call: the call at seq 14 was under the ceiling, the next
    # step (seq 19) is not, so no further call is made and the task stops.
    assert [e.type for e in run.events[12:]] == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_failed",
        "subtask_failed",
        "failure_policy_applied",
        "subtask_assigned",
        "agent_step_started",
        "limit_reached",
        "task_failed",
    ]
    (limit,) = run.of_type("limit_reached")
    assert (limit.limit, limit.severity, limit.value, limit.threshold) == ("events", "stop", 19, 16)
    (failed,) = run.of_type("task_failed")
    assert failed.error_kind == "event_ceiling"
    assert (
        failed.reason
        == "task ceiling reached: 19 events recorded, the ceiling is 16 (limits.max_events)"
    )


def test_ceilings_come_from_the_settings_unless_the_workflow_sets_them():
    settings = Settings(max_llm_calls=50, max_events=900, unpriced_calls="refuse")

    assert Limits().llm_call_ceiling == 500 and Limits().event_ceiling == 5000
    resolved = Limits(max_events=10).with_settings(settings)
    assert (resolved.llm_call_ceiling, resolved.event_ceiling, resolved.unpriced_policy) == (
        50,
        10,
        "refuse",
    )


def test_a_workflow_file_declares_prices_ceilings_and_the_policies_a_plan_may_choose(
    tmp_path: Path,
):

    path = tmp_path / "wf.yaml"
    path.write_text(
        "name: bounded\n"
        "orchestrator: planner\n"
        "agents:\n"
        "  planner: {routes_to: [researcher]}\n"
        "  researcher: {max_retries: 1, plan_on_failure: [fail_task, retry]}\n"
        "limits: {max_cost_usd: 1.0, max_llm_calls: 40, unpriced_calls: refuse}\n"
        "prices:\n"
        '  "llama3.1:8b": {input_per_mtok: 0.1, output_per_mtok: 0.2}\n'
    )

    wf = load_workflow(path, settings=Settings(max_events=700))

    assert wf.prices == {"llama3.1:8b": ModelPrice(input_per_mtok=0.1, output_per_mtok=0.2)}
    assert (wf.limits.llm_call_ceiling, wf.limits.event_ceiling) == (40, 700)
    assert wf.limits.unpriced_policy == "refuse"
    assert wf.agents["researcher"].plan_on_failure == ("fail_task", "retry")
    assert wf.agents["planner"].plan_on_failure == ("fail_task", "retry", "replan", "skip")
