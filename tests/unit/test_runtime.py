"""The embedded runtime end to end on the in-memory log, with the scripted model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from agentledger.agents.workflow import AgentSpec, Limits, Workflow
from agentledger.errors import ModelError
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, call_tool, reply, reply_json
from agentledger.schemas import RecordedToolCall
from agentledger.streams import MemoryEventLog
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.testing import make_runtime, run_goal, task_events
from agentledger.tools import tool
from tests.support.scripted_runs import EXECUTIONS, crash_workflow, deterministic, plan, search


class Findings(BaseModel):
    summary: str = Field(min_length=3)


@tool()
def explode(query: str) -> dict:
    """Always fails."""
    raise RuntimeError(f"backend down for {query}")


def workflow(**limits) -> Workflow:
    return Workflow.build(
        name="unit",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("researcher", "writer")),
            AgentSpec(
                "researcher",
                tools=("search", "explode"),
                output_model=Findings,
                routes_to=("writer",),
            ),
            AgentSpec("writer", max_iterations=4, warn_iterations=3),
        ],
        tools=[search, explode],
        limits=Limits(**limits),
    )


TWO_RESEARCHERS = plan(
    {"id": "a", "agent": "researcher", "description": "aspect A"},
    {"id": "b", "agent": "researcher", "description": "aspect B"},
    {"id": "w", "agent": "writer", "description": "write it", "depends_on": ["a", "b"]},
)


async def test_happy_path_event_order_inputs_and_parallelism():
    seen_by_writer: list[ModelRequest] = []

    def writer(request: ModelRequest) -> ModelResponse:
        seen_by_writer.append(request)
        return reply("the brief")

    model = ScriptedModel(
        {
            "planner": [TWO_RESEARCHERS],
            "researcher/a": [call_tool("search", query="a"), reply_json({"summary": "found a"})],
            "researcher/b": [call_tool("search", query="b"), reply_json({"summary": "found b"})],
            "writer": [writer],
        }
    )
    run = await run_goal(workflow(), model, "write about a and b")
    model.assert_complete()
    assert run.state.status == "completed"
    assert run.state.result == "the brief"
    assert run.types()[:7] == [
        "goal_submitted",
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
        "task_planned",
    ]
    assert run.types("a") == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "tool_call_requested",
        "tool_call_completed",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]
    assert run.types()[-1] == "task_completed"
    # a and b ran concurrently: both started before either finished
    seqs: dict[tuple[str, str | None], int] = {}
    for e in run.events:
        seqs.setdefault((e.type, getattr(e, "subtask_id", None)), e.seq)
    assert max(seqs[("agent_step_started", "a")], seqs[("agent_step_started", "b")]) < min(
        seqs[("subtask_completed", "a")], seqs[("subtask_completed", "b")]
    )
    # the writer got exactly its declared inputs, after both
    (assigned,) = [e for e in run.of_type("subtask_assigned") if e.subtask_id == "w"]
    assert assigned.inputs == {"a": {"summary": "found a"}, "b": {"summary": "found b"}}
    assert assigned.seq > seqs[("subtask_completed", "a")]
    assert '"found a"' in seen_by_writer[0].messages[1].content
    # seq is contiguous, every caused event points at an earlier event
    assert [e.seq for e in run.events] == list(range(1, len(run.events) + 1))
    ids = {e.event_id: e.seq for e in run.events}
    assert all(ids[e.causation_id] < e.seq for e in run.events if e.causation_id)
    assert run.state.tokens_in > 0 and run.state.llm_calls == 6


async def test_a_model_that_never_stops_is_stopped_at_the_cap():
    model = ScriptedModel(
        lambda r: (
            plan({"id": "w", "agent": "writer"})
            if r.agent == "planner"
            else call_tool("search", query=f"x{r.iteration}")
        )
    )
    run = await run_goal(workflow(), model, "g")
    limits = run.of_type("limit_reached")
    assert [(e.severity, e.value, e.threshold) for e in limits] == [
        ("warning", 3, 3),
        ("stop", 5, 4),
    ]
    (failed,) = run.of_type("subtask_failed")
    assert failed.error_kind == "iteration_limit"
    assert len([e for e in run.of_type("llm_call_completed") if e.subtask_id == "w"]) == 4
    assert run.state.status == "failed"
    assert run.state.iterations["writer"] == 4


async def test_tools_outside_the_allow_list_unknown_or_with_bad_arguments_are_refused():
    def researcher(r: ModelRequest) -> ModelResponse:
        if r.iteration == 1:
            return ModelResponse(
                model="scripted",
                tool_calls=[
                    RecordedToolCall(call_id="c1", tool="delete_everything", arguments={}),
                    RecordedToolCall(
                        call_id="c2", tool="search", arguments={"query": 42, "extra": True}
                    ),
                    RecordedToolCall(
                        call_id="c3", tool="search", arguments=None, raw_arguments="{oops"
                    ),
                    RecordedToolCall(call_id="c4", tool="search", arguments={"query": "fine"}),
                ],
            )
        return reply_json({"summary": "continued after refusals"})

    model = ScriptedModel(
        lambda r: (
            plan({"id": "a", "agent": "researcher"}) if r.agent == "planner" else researcher(r)
        )
    )
    run = await run_goal(workflow(), model, "g")
    assert run.state.status == "completed"
    rejected = {e.call_id: e.error_kind for e in run.of_type("tool_call_rejected")}
    assert rejected == {"c1": "unknown_tool", "c2": "invalid_arguments", "c3": "invalid_arguments"}
    assert [e.call_id for e in run.of_type("tool_call_completed")] == ["c4"]
    # the agent was told why, in its next request
    tool_msgs = [m for m in model.calls[-1].messages if m.role == "tool"]
    assert any("no tool named 'delete_everything'" in (m.content or "") for m in tool_msgs)


async def test_a_tool_allowed_elsewhere_but_not_for_this_agent_is_refused():
    model = ScriptedModel(
        {
            "planner": [plan({"id": "w", "agent": "writer"})],
            "writer": [call_tool("search", query="x"), reply("done")],
        }
    )
    run = await run_goal(workflow(), model, "g")
    (rejected,) = run.of_type("tool_call_rejected")
    assert (
        rejected.error_kind == "not_allowed"
        and "'writer' is not allowed to call 'search'" in rejected.reason
    )
    assert run.state.status == "completed"


async def test_a_failing_tool_is_reported_to_the_agent_which_continues():
    model = ScriptedModel(
        {
            "planner": [plan({"id": "a", "agent": "researcher"})],
            "researcher": [
                call_tool("explode", query="q"),
                reply_json({"summary": "worked around it"}),
            ],
        }
    )
    run = await run_goal(workflow(), model, "g")
    (failed,) = run.of_type("tool_call_failed")
    assert failed.error_kind == "tool_error" and "backend down for q" in failed.message
    assert run.state.status == "completed"


async def test_invalid_plan_is_rejected_and_replanned():
    model = ScriptedModel(
        {
            "planner": [
                plan(
                    {"id": "a", "agent": "ghost"},
                    {"id": "b", "agent": "researcher", "depends_on": ["zz"]},
                ),
                plan({"id": "w", "agent": "writer"}),
            ],
            "writer": [reply("done")],
        }
    )
    run = await run_goal(workflow(), model, "g")
    (rejected,) = run.of_type("plan_rejected")
    assert rejected.will_retry
    assert "no agent named 'ghost'" in rejected.problems[0]
    assert any("'zz', which is not in the plan" in p for p in rejected.problems)
    assert "previous_plan_problems" in model.calls[1].messages[1].content
    assert run.state.status == "completed"


async def test_plan_that_stays_invalid_fails_the_task_after_the_attempts():
    bad = plan(
        {"id": "a", "agent": "writer"}, {"id": "b", "agent": "researcher", "depends_on": ["a"]}
    )
    model = ScriptedModel({"planner": [bad, bad]})
    run = await run_goal(workflow(max_plan_attempts=2), model, "g")
    assert [e.will_retry for e in run.of_type("plan_rejected")] == [True, False]
    assert "no route writer -> researcher" in run.of_type("plan_rejected")[0].problems[0]
    (failed,) = run.of_type("task_failed")
    assert failed.error_kind == "invalid_plan"


async def test_model_failure_becomes_events_and_fails_the_task():
    model = ScriptedModel(
        {
            "planner": [plan({"id": "w", "agent": "writer"})],
            "writer": [ModelError("401 bad key", kind="auth")],
        }
    )
    run = await run_goal(workflow(), model, "g")
    (llm_failed,) = run.of_type("llm_call_failed")
    assert llm_failed.error_kind == "auth" and not llm_failed.retryable
    assert run.of_type("subtask_failed")[0].error_kind == "llm_auth"
    assert "writer" in run.state.failure and "401 bad key" in run.state.failure


# --- crash recovery: resume from every prefix of a run ------------------------------------


async def test_resume_from_any_crash_point_completes_without_repeating_side_effects():
    wf = crash_workflow()
    full = await run_goal(wf, ScriptedModel(deterministic), "send two")
    assert full.state.status == "completed"
    history = full.events
    # A reaction's output is one atomic append, so a crash falls between batches only.
    boundaries = [
        i for i in range(1, len(history)) if history[i].causation_id != history[i - 1].causation_id
    ]
    assert len(boundaries) > 20
    for cut in boundaries:
        EXECUTIONS.clear()
        log = MemoryEventLog()
        await log.append(history[:cut])
        runner = EmbeddedRunner(log, make_runtime(wf, ScriptedModel(deterministic)))
        state = await runner.run(full.task_id)
        events = await task_events(log, full.task_id)
        assert state.status == "completed", f"cut at {cut}"
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), f"cut at {cut}"
        started_before = {e.idempotency_key for e in history[:cut] if e.type == "tool_call_started"}
        # nothing already started before the crash runs again; nothing runs twice
        assert not started_before & set(EXECUTIONS), f"cut at {cut}"
        assert len(EXECUTIONS) == len(set(EXECUTIONS)), f"cut at {cut}"
        outcomes = [e for e in events if e.type in ("tool_call_completed", "tool_call_failed")]
        assert len(outcomes) == len({e.call_id for e in outcomes}) == 4, f"cut at {cut}"
        unknown = [e for e in events if e.type == "tool_call_failed"]
        dangling = {
            e.idempotency_key
            for e in history[:cut]
            if e.type == "tool_call_started"
            and not any(
                o.type == "tool_call_completed" and o.idempotency_key == e.idempotency_key
                for o in history[:cut]
            )
        }
        assert {e.idempotency_key for e in unknown} == dangling, f"cut at {cut}"
        assert all(e.error_kind == "outcome_unknown" for e in unknown)


async def test_rerunning_a_finished_task_changes_nothing():
    wf = crash_workflow()
    full = await run_goal(wf, ScriptedModel(deterministic), "send two")
    EXECUTIONS.clear()
    runner = EmbeddedRunner(full.log, make_runtime(wf, ScriptedModel({})))
    state = await runner.run(full.task_id)
    assert state.status == "completed"
    assert await task_events(full.log, full.task_id) == full.events
    assert EXECUTIONS == []


async def test_idempotency_ledger_answers_a_completed_key_without_running_the_tool():
    from agentledger.agents.context import ProcessorContext
    from agentledger.agents.tool_executor import ToolExecutor
    from agentledger.projections.task_state import fold

    wf = crash_workflow()
    full = await run_goal(wf, ScriptedModel(deterministic), "send two")
    EXECUTIONS.clear()
    request = next(e for e in full.events if e.type == "tool_call_requested" and e.tool == "send")
    redelivered = request.model_copy(update={"event_id": "redelivered-1"})
    state = fold(full.task_id, [e for e in full.events if e.type != "task_completed"])
    ctx = ProcessorContext(state, make_runtime(wf, ScriptedModel({})))
    (out,) = await ToolExecutor().handle(redelivered, ctx)
    assert out.type == "tool_call_completed" and out.replayed
    assert out.result == {"sent_to": request.arguments["to"]}
    assert EXECUTIONS == []


@pytest.mark.parametrize("corrupt_at", [3, 7])
async def test_corrupt_event_in_the_log_is_reported_and_the_rest_still_read(corrupt_at: int):
    wf = crash_workflow()
    full = await run_goal(wf, ScriptedModel(deterministic), "send two")
    log = MemoryEventLog()
    await log.append(full.events[: corrupt_at - 1])
    offset = log.inject_raw(full.task_id, corrupt_at, b'{"type": "mystery"}')
    await log.append(full.events[corrupt_at:])
    reported = []
    runner = EmbeddedRunner(
        log, make_runtime(wf, ScriptedModel(deterministic)), on_corrupt=reported.append
    )
    await runner.run(full.task_id)
    assert [(r.offset, r.reason) for r in reported] == [(offset, "unknown event type 'mystery'")]
    entries = await log.read_task(full.task_id)
    assert len(entries) == len(full.events)


async def test_varied_tool_calls_are_not_a_loop():
    def researcher(r: ModelRequest) -> ModelResponse:
        if r.iteration <= 4:
            return call_tool("search", query=f"q{r.iteration % 2}")  # alternates: each pair twice
        return reply_json({"summary": "found enough"})

    model = ScriptedModel(
        lambda r: (
            plan({"id": "a", "agent": "researcher"}) if r.agent == "planner" else researcher(r)
        )
    )
    run = await run_goal(workflow(), model, "g")
    assert run.state.status == "completed"
    assert run.of_type("limit_reached") == []
