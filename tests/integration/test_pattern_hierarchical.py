"""The hierarchical pattern: examples/hierarchical, a sub-orchestrator with its own team."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import Workflow, load_workflow
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, reply_json
from agentledger.settings import Settings
from agentledger.testing import RunResult, run_goal

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hierarchical"
GOAL = "Idempotency keys"
FINDINGS = {
    "mechanics": {
        "aspect": "mechanics",
        "points": [
            "the client sends one key per logical operation",
            "the server stores the outcome",
        ],
    },
    "pitfalls": {
        "aspect": "pitfalls",
        "points": ["keys reused across operations replay the wrong answer", "outcomes expire"],
    },
}
NESTED_STEP = [
    "subtask_assigned",
    "agent_step_started",
    "llm_call_completed",
    "agent_output_produced",
    "subtask_completed",
]
ORCHESTRATION = {
    "task_planned",
    "subtask_planned",
    "subtask_plan_rejected",
    "subtask_assigned",
    "subtask_completed",
    "task_completed",
}


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    return load_workflow(EXAMPLE / "workflow.yaml", settings=Settings(home=tmp_path))


async def run(wf: Workflow, tmp_path: Path, **models: ScriptedModel) -> RunResult:
    runtime = build_runtime(wf, Settings(home=tmp_path), models=models or None)
    result = await run_goal(wf, {}, GOAL, runtime=runtime)
    assert result.state.status == "completed", result.state.failure
    return result


def flow(result: RunResult) -> list[tuple[str, str | None]]:
    """The orchestration events, as (type, subtask id)."""
    return [
        (e.type, getattr(e, "subtask_id", None)) for e in result.events if e.type in ORCHESTRATION
    ]


def check_nested_levels(result: RunResult) -> None:
    events = {e.event_id: e for e in result.events}
    (planned,) = result.of_type("subtask_planned")
    assert (planned.subtask_id, planned.level, planned.agent) == ("research", 2, "research_lead")
    assert [(s.id, s.agent) for s in planned.plan.subtasks] == [
        ("mechanics", "researcher"),
        ("pitfalls", "researcher"),
    ]
    # nested subtasks run namespaced under the parent, with the parent's inputs (none here)
    for sid in ("research/mechanics", "research/pitfalls"):
        assert result.types(sid) == NESTED_STEP
        (assigned,) = [e for e in result.of_type("subtask_assigned") if e.subtask_id == sid]
        assert assigned.inputs == {} and assigned.causation_id == planned.causation_id
    # the parent completes once, caused by the later nested completion, with both outputs
    (done,) = [e for e in result.of_type("subtask_completed") if e.subtask_id == "research"]
    assert done.output == FINDINGS and done.agent == "research_lead"
    assert events[done.causation_id].subtask_id in ("research/mechanics", "research/pitfalls")
    nested_done = [
        e.seq
        for e in result.of_type("subtask_completed")
        if e.subtask_id in ("research/mechanics", "research/pitfalls")
    ]
    assert done.seq > max(nested_done)
    (write,) = [e for e in result.of_type("subtask_assigned") if e.subtask_id == "write"]
    assert write.inputs == {"research": FINDINGS} and write.causation_id == done.event_id


async def test_a_sub_orchestrator_plans_and_runs_its_own_team(workflow: Workflow, tmp_path: Path):
    result = await run(workflow, tmp_path)
    (top,) = result.of_type("task_planned")
    assert [(s.id, s.agent) for s in top.plan.subtasks] == [
        ("research", "research_lead"),
        ("write", "writer"),
    ]
    assert flow(result) == [
        ("subtask_assigned", "_plan"),
        ("subtask_completed", "_plan"),
        ("task_planned", None),
        ("subtask_assigned", "research"),
        ("subtask_assigned", "research/_plan"),
        ("subtask_completed", "research/_plan"),
        ("subtask_planned", "research"),
        ("subtask_assigned", "research/mechanics"),
        ("subtask_assigned", "research/pitfalls"),
        ("subtask_completed", "research/mechanics"),
        ("subtask_completed", "research/pitfalls"),
        ("subtask_completed", "research"),
        ("subtask_assigned", "write"),
        ("subtask_completed", "write"),
        ("task_completed", None),
    ]
    # the lead was asked to plan its subtask, and offered only its own team
    (ask,) = [e for e in result.of_type("subtask_assigned") if e.subtask_id == "research/_plan"]
    assert ask.agent == "research_lead" and ask.description.endswith(f"Research: {GOAL}")
    check_nested_levels(result)
    assert result.types("research") == ["subtask_assigned", "subtask_planned", "subtask_completed"]
    assert "## Pitfalls" in str(result.state.result)


async def test_a_nested_plan_that_breaks_the_team_graph_is_rejected_and_replanned(
    workflow: Workflow, tmp_path: Path
):
    from team_model import respond  # the example's own rules, importable once it is loaded

    bad = reply_json(
        {
            "subtasks": [
                {"id": "mechanics", "agent": "researcher", "description": f"mechanics: {GOAL}"},
                {"id": "summary", "agent": "researcher", "depends_on": ["mechanics"]},
                {"id": "boss", "agent": "director"},
            ]
        }
    )
    seen: list[ModelRequest] = []

    def second(request: ModelRequest) -> ModelResponse:
        seen.append(request)
        return respond(request)

    lead = ScriptedModel({"research_lead": [bad, second]})
    result = await run(workflow, tmp_path, research_lead=lead)
    lead.assert_complete()
    (rejected,) = result.of_type("subtask_plan_rejected")
    assert (rejected.subtask_id, rejected.level, rejected.attempt, rejected.will_retry) == (
        "research",
        2,
        1,
        True,
    )
    assert rejected.problems == [
        "subtask 'summary' takes the output of 'mechanics', but the graph has no route "
        "researcher -> researcher",
        "subtask 'boss': research_lead may not route work to 'director'",
    ]
    assert flow(result)[4:9] == [
        ("subtask_assigned", "research/_plan"),
        ("subtask_completed", "research/_plan"),
        ("subtask_plan_rejected", "research"),
        ("subtask_assigned", "research/_plan"),
        ("subtask_completed", "research/_plan"),
    ]
    again = [e for e in result.of_type("subtask_assigned") if e.subtask_id == "research/_plan"][1]
    assert again.attempt == 2 and again.inputs["previous_plan_problems"] == rejected.problems
    assert "previous_plan_problems" in (seen[0].messages[1].content or "")
    (planned,) = result.of_type("subtask_planned")
    assert planned.attempt == 2
    assert result.types("research") == [
        "subtask_assigned",
        "subtask_plan_rejected",
        "subtask_planned",
        "subtask_completed",
    ]
    # nothing of the rejected plan ran
    assert "research/summary" not in result.state.subtasks
    assert "research/boss" not in result.state.subtasks
    check_nested_levels(result)
