"""Guard rails, each with the exact events it produces: iteration caps, budgets, loops,
repairs, circuit breakers, retries with backoff, and context compaction."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from pydantic import BaseModel, Field

from agentledger.agents.breakers import Breakers
from agentledger.agents.context import Runtime
from agentledger.agents.context_window import ContextSettings
from agentledger.agents.workflow import AgentSpec, Limits, Workflow
from agentledger.errors import ModelError, ToolError, TransientToolError
from agentledger.llm import (
    ModelPrice,
    ModelRequest,
    ModelResponse,
    PriceTable,
    ScriptedModel,
    call_tool,
    reply,
    reply_json,
)
from agentledger.projections.compaction import SUMMARY_HEADER
from agentledger.schemas import Event
from agentledger.security.untrusted import data_block
from agentledger.streams import MemoryEventLog
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.testing import RunResult, make_runtime, run_goal, task_events
from agentledger.tools import tool
from agentledger.tools.registry import BreakerSettings
from tests.support.scripted_runs import plan

STEP = ["agent_step_started", "llm_call_completed", "tool_call_requested", "tool_call_completed"]


class Findings(BaseModel):
    summary: str = Field(min_length=3)


@tool()
def search(query: str) -> dict:
    """Search the notes."""
    return {"hits": [f"note about {query}: " + "detail " * 40]}


def workflow(*tools: object, limits: Limits | None = None, **agent: object) -> Workflow:
    """A planner and one researcher (subtask "a") allowed ``tools``."""
    all_tools = [search, *tools]
    return Workflow.build(
        name="guards",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("researcher",)),
            AgentSpec(
                "researcher",
                tools=tuple(t.name for t in all_tools),  # type: ignore[attr-defined]
                output_model=Findings,
                **agent,  # type: ignore[arg-type]
            ),
        ],
        tools=all_tools,
        limits=limits,
    )


def researcher_only(answer):  # type: ignore[no-untyped-def]
    """A script: the planner plans subtask "a"; ``answer`` answers the researcher."""

    def respond(r: ModelRequest) -> ModelResponse:
        if r.agent == "planner":
            return plan({"id": "a", "agent": "researcher"})
        return answer(r)

    return respond


def of(run: RunResult, event_type: str, subtask_id: str = "a") -> list[Event]:
    return [e for e in run.of_type(event_type) if getattr(e, "subtask_id", None) == subtask_id]


class Clock:
    """Injected into the breakers: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def runtime_with_clock(wf: Workflow, model: ScriptedModel, clock: Clock) -> Runtime:
    return dataclasses.replace(make_runtime(wf, model), breakers=Breakers(clock=clock))


# --- the "Done means" --------------------------------------------------------------


async def test_a_model_that_never_stops_is_warned_at_10_and_stopped_at_15():
    model = ScriptedModel(researcher_only(lambda r: call_tool("search", query=f"q{r.iteration}")))
    run = await run_goal(workflow(), model, "g")
    expected = ["subtask_assigned"]
    for i in range(1, 16):
        expected += ["limit_reached"] if i == 10 else []
        expected += STEP
    assert run.types("a") == [
        *expected,
        "limit_reached",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    warning, stop = of(run, "limit_reached")
    assert (warning.limit, warning.severity, warning.value, warning.threshold) == (
        "iterations",
        "warning",
        10,
        10,
    )
    assert warning.detail == "hard stop at 15"
    assert (stop.limit, stop.severity, stop.value, stop.threshold) == ("iterations", "stop", 16, 15)
    (failed,) = run.of_type("subtask_failed")
    assert failed.error_kind == "iteration_limit"
    assert failed.reason == "iteration cap reached: researcher used 15 of 15 iterations"
    assert run.state.status == "failed" and run.state.iterations["researcher"] == 15


@pytest.mark.parametrize(
    ("limit", "budget", "prices"),
    [
        ("tokens", Limits(max_tokens=900), None),
        (
            "cost_usd",
            Limits(max_cost_usd=0.9),
            PriceTable({"scripted": ModelPrice(input_per_mtok=1000.0, output_per_mtok=1000.0)}),
        ),
    ],
)
async def test_a_budget_overrun_stops_the_task(limit: str, budget: Limits, prices: PriceTable):
    # The plan costs ~360 tokens ($0.36), each researcher call ~130, 210, 290, ... more.
    wf = workflow(limits=budget)
    model = ScriptedModel(researcher_only(lambda r: call_tool("search", query=f"q{r.iteration}")))
    run = await run_goal(wf, model, "g", runtime=make_runtime(wf, model, prices=prices))
    assert run.types() == [
        "goal_submitted",
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
        "task_planned",
        "subtask_assigned",
        *STEP,
        *STEP,
        "agent_step_started",
        "llm_call_completed",
        "limit_reached",
        "task_failed",
    ]
    calls = run.of_type("llm_call_completed")
    spent = {
        "tokens": sum(c.usage.input_tokens + c.usage.output_tokens for c in calls),
        "cost_usd": round(sum(c.cost_usd for c in calls), 10),
    }[limit]
    threshold = budget.max_tokens if limit == "tokens" else budget.max_cost_usd
    (reached,) = run.of_type("limit_reached")
    assert (reached.limit, reached.scope, reached.severity) == (limit, "task", "stop")
    assert (reached.value, reached.threshold) == (pytest.approx(spent), threshold)
    assert reached.detail == "task budget exceeded after 4 LLM calls"
    (failed,) = run.of_type("task_failed")
    assert failed.error_kind == "budget_exceeded"
    assert failed.reason == f"task budget exceeded: {limit} {reached.value:g} > {threshold:g}"


async def test_a_repeating_tool_call_is_caught_as_a_loop():
    model = ScriptedModel(researcher_only(lambda r: call_tool("search", query="same")))
    run = await run_goal(workflow(), model, "g")
    assert run.types("a") == [
        "subtask_assigned",
        *STEP,
        *STEP,
        "agent_step_started",
        "llm_call_completed",
        "limit_reached",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    (limit,) = run.of_type("limit_reached")
    assert (limit.limit, limit.scope, limit.severity, limit.value, limit.threshold) == (
        "repeated_tool_call",
        "agent",
        "stop",
        3,
        3,
    )
    assert limit.detail == 'search({"query":"same"}) asked 3 times'
    (failed,) = run.of_type("subtask_failed")
    assert failed.error_kind == "loop_detected"
    assert failed.reason == (
        "loop detected: researcher called 'search' with the same arguments 3 times"
    )


async def test_a_malformed_handoff_is_repaired_with_the_validation_error_fed_back():
    model = ScriptedModel(
        {
            "planner": [plan({"id": "a", "agent": "researcher"})],
            "researcher": [reply_json({"summary": ""}), reply_json({"summary": "ok now"})],
        }
    )
    run = await run_goal(workflow(), model, "g")
    assert run.types("a") == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "output_rejected",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]
    (rejected,) = run.of_type("output_rejected")
    assert rejected.will_retry
    assert rejected.errors == ["summary: String should have at least 3 characters"]
    retry = of(run, "agent_step_started")[1]
    assert retry.feedback is not None and rejected.errors[0] in retry.feedback
    assert model.calls[-1].messages[-1].role == "user"
    assert model.calls[-1].messages[-1].content == retry.feedback
    assert "did not match the required output" in retry.feedback
    assert run.state.status == "completed" and run.state.result == {"summary": "ok now"}


async def test_a_handoff_that_never_validates_fails_clearly_after_max_repairs():
    model = ScriptedModel(researcher_only(lambda r: reply("not json")))
    run = await run_goal(workflow(max_repairs=2), model, "g")
    attempt = ["agent_step_started", "llm_call_completed", "output_rejected"]
    assert run.types("a") == [
        "subtask_assigned",
        *attempt,
        *attempt,
        *attempt,
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    assert [e.will_retry for e in run.of_type("output_rejected")] == [True, True, False]
    (failed,) = run.of_type("subtask_failed")
    assert failed.error_kind == "invalid_output"
    assert failed.reason.startswith("output of 'researcher' broke its contract after 2 repairs: ")
    assert "not valid JSON" in failed.reason


# --- circuit breakers ------------------------------------------------------------------------


async def test_agent_breaker_opens_refuses_then_trials_reopens_and_closes():
    """The model breaker outlives a task: it opens across tasks of one process."""
    clock = Clock()
    healthy = {"now": False}

    def researcher(r: ModelRequest) -> ModelResponse:
        if not healthy["now"]:
            raise ModelError("503 from upstream", kind="server_error", retryable=True)
        return reply_json({"summary": "fine again"})

    wf = workflow(circuit_breaker=BreakerSettings(failure_threshold=2, cooldown_s=30))
    runtime = runtime_with_clock(wf, ScriptedModel(researcher_only(researcher)), clock)

    async def task() -> RunResult:
        return await run_goal(wf, runtime.models["planner"], "g", runtime=runtime)

    head = ["subtask_assigned", "agent_step_started"]
    first = await task()
    assert first.types("a") == [
        *head,
        "llm_call_failed",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    second = await task()
    assert second.types("a") == [
        *head,
        "llm_call_failed",
        "circuit_state_changed",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    (opened,) = second.of_type("circuit_state_changed")
    assert (opened.scope, opened.name, opened.from_state, opened.to_state) == (
        "agent",
        "researcher",
        "closed",
        "open",
    )
    assert (opened.consecutive_failures, opened.threshold, opened.cooldown_s) == (2, 2, 30)
    assert opened.reopens_at.timestamp() == clock.now + 30
    assert opened.subtask_id == "a" and opened.agent == "researcher"

    refused = await task()  # the model is not called at all
    assert refused.types("a") == [*head, "subtask_failed", "failure_policy_applied", "task_failed"]
    (failed,) = refused.of_type("subtask_failed")
    assert failed.error_kind == "circuit_open"
    assert failed.reason.startswith(
        "circuit breaker for the model of agent 'researcher' is open after 2 consecutive "
        "failures; the next trial call is allowed at "
    )

    clock.now += 30  # cooled down: one trial, which fails, re-opens the breaker
    trial = await task()
    assert trial.types("a") == [
        *head,
        "circuit_state_changed",
        "llm_call_failed",
        "circuit_state_changed",
        "subtask_failed",
        "failure_policy_applied",
        "task_failed",
    ]
    assert [(e.from_state, e.to_state) for e in trial.of_type("circuit_state_changed")] == [
        ("open", "half_open"),
        ("half_open", "open"),
    ]
    assert (await task()).of_type("subtask_failed")[0].error_kind == "circuit_open"

    clock.now += 30
    healthy["now"] = True  # the trial succeeds and closes it
    recovered = await task()
    assert recovered.types("a") == [
        *head,
        "circuit_state_changed",
        "llm_call_completed",
        "circuit_state_changed",
        "agent_output_produced",
        "subtask_completed",
    ]
    transitions = recovered.of_type("circuit_state_changed")
    assert [(e.from_state, e.to_state, e.consecutive_failures) for e in transitions] == [
        ("open", "half_open", 3),
        ("half_open", "closed", 0),
    ]
    assert recovered.state.status == "completed"


async def test_tool_breaker_rejects_calls_while_open_and_the_agent_continues():
    clock = Clock()
    down = {"now": True}

    @tool(circuit_breaker=BreakerSettings(failure_threshold=2, cooldown_s=10))
    def billing(query: str) -> dict:
        """Look up an invoice."""
        if down["now"]:
            raise ToolError("billing API unavailable")
        return {"invoice": query}

    def researcher(r: ModelRequest) -> ModelResponse:
        if r.iteration == 4:
            clock.now += 10
            down["now"] = False
        if r.iteration <= 4:
            return call_tool("billing", query=f"inv{r.iteration}")
        return reply_json({"summary": "invoices checked"})

    wf = workflow(billing)
    model = ScriptedModel(researcher_only(researcher))
    run = await run_goal(wf, model, "g", runtime=runtime_with_clock(wf, model, clock))
    call = ["agent_step_started", "llm_call_completed", "tool_call_requested"]
    assert run.types("a") == [
        "subtask_assigned",
        *call,
        "tool_call_failed",
        *call,
        "tool_call_failed",
        "circuit_state_changed",  # closed -> open
        *call,
        "tool_call_rejected",  # refused without running
        *call,
        "circuit_state_changed",  # open -> half_open: the trial
        "tool_call_completed",
        "circuit_state_changed",  # half_open -> closed
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]
    transitions = run.of_type("circuit_state_changed")
    assert [(e.scope, e.name, e.from_state, e.to_state) for e in transitions] == [
        ("tool", "billing", "closed", "open"),
        ("tool", "billing", "open", "half_open"),
        ("tool", "billing", "half_open", "closed"),
    ]
    assert (transitions[0].threshold, transitions[0].cooldown_s) == (2, 10)
    (rejected,) = run.of_type("tool_call_rejected")
    assert rejected.error_kind == "circuit_open"
    assert "circuit breaker for tool 'billing' is open after 2 consecutive failures" in (
        rejected.reason
    )
    told = [m.content for m in model.calls[4].messages if m.role == "tool"][-1]
    assert told == data_block(f"ERROR (circuit_open): {rejected.reason}", "tool billing")
    assert run.state.status == "completed" and run.state.tool_requests == {}


def test_half_open_admits_one_trial_and_a_trial_that_never_reports_expires():
    from agentledger.agents.breakers import CircuitBreaker
    from agentledger.schemas import GoalSubmitted, WorkflowRef

    clock = Clock()
    cause = GoalSubmitted(task_id="t", goal="g", workflow=WorkflowRef(name="w"))
    settings = BreakerSettings(failure_threshold=1, cooldown_s=5)
    breaker = CircuitBreaker("tool", "search", clock)
    assert [e.to_state for e in breaker.record(cause, settings, ok=False)] == ["open"]
    clock.now += 5
    trial = breaker.admit(cause, settings)
    assert trial.allowed and [e.to_state for e in trial.events] == ["half_open"]
    second = breaker.admit(cause, settings)
    assert not second.allowed and second.events == []
    assert second.reason == (
        "circuit breaker for tool 'search' is half-open and its trial call is still running"
    )
    clock.now += 5  # the trial's task was cancelled: another call may try
    assert breaker.admit(cause, settings).allowed and breaker.state == "half_open"


def test_breaker_settings_come_from_the_workflow_file_with_overrides(tmp_path):
    from agentledger.agents.workflow import load_workflow

    (tmp_path / "wf.yaml").write_text(
        """
name: breakers
orchestrator: planner
circuit_breaker: {failure_threshold: 4, cooldown_s: 12}
tools:
  calc: {function: "agentledger.tools.builtin:calculator", max_attempts: 5,
         backoff_base_s: 0.1, backoff_max_s: 2, circuit_breaker: {failure_threshold: 2}}
agents:
  planner: {routes_to: [worker], circuit_breaker: {cooldown_s: 5}}
  worker: {tools: [calc], context: {max_tokens: 8000, keep_recent_turns: 4}}
"""
    )
    wf = load_workflow(tmp_path / "wf.yaml")
    assert wf.circuit_breaker == BreakerSettings(failure_threshold=4, cooldown_s=12)
    calc = wf.tools.get("calc")
    assert calc is not None
    assert calc.circuit_breaker == BreakerSettings(failure_threshold=2, cooldown_s=12)
    assert (calc.max_attempts, calc.backoff_base_s, calc.backoff_max_s) == (5, 0.1, 2)
    assert wf.agents["planner"].circuit_breaker == BreakerSettings(
        failure_threshold=4, cooldown_s=5
    )
    assert wf.agents["worker"].circuit_breaker is None
    assert wf.agents["worker"].context == ContextSettings(max_tokens=8000, keep_recent_turns=4)
    assert wf.agents["planner"].context == ContextSettings()


def test_invalid_guard_settings_in_a_workflow_file_are_reported(tmp_path):
    from agentledger.agents.workflow import load_workflow
    from agentledger.errors import WorkflowError

    (tmp_path / "wf.yaml").write_text(
        """
name: bad
orchestrator: planner
circuit_breaker: {failure_threshold: 0}
tools:
  calc: {function: "agentledger.tools.builtin:calculator", max_attempts: 0}
agents:
  planner: {routes_to: [worker], context: {max_tokens: -1, keep_recnt_turns: 2}}
  worker: {}
"""
    )
    with pytest.raises(WorkflowError) as err:
        load_workflow(tmp_path / "wf.yaml")
    assert err.value.problems == [
        "tools.calc.max_attempts: Input should be greater than or equal to 1",
        "agents.planner.context.max_tokens: Input should be greater than 0",
        "agents.planner.context.keep_recnt_turns: Extra inputs are not permitted",
        "circuit_breaker.failure_threshold: Input should be greater than or equal to 1",
    ]


# --- retries with backoff --------------------------------------------------------------------


def flaky(failures: int, *, exc: type[Exception] = TransientToolError, **options: object):  # type: ignore[no-untyped-def]
    """A tool failing its first ``failures`` runs; ``runs`` counts them."""
    runs: list[str] = []

    @tool(name="flaky", backoff_base_s=0.001, backoff_max_s=0.003, **options)  # type: ignore[arg-type]
    def flaky_tool(query: str) -> dict:
        """Call a flaky service."""
        runs.append(query)
        if len(runs) <= failures:
            raise exc(f"service hiccup #{len(runs)}")
        return {"answer": query}

    return flaky_tool, runs


def calls_flaky_once(r: ModelRequest) -> ModelResponse:
    if r.iteration == 1:
        return call_tool("flaky", query="q")
    return reply_json({"summary": "done with flaky"})


async def test_transient_tool_failures_are_retried_with_exponential_backoff_and_jitter():
    flaky_tool, runs = flaky(3, max_attempts=4)
    run = await run_goal(
        workflow(flaky_tool), ScriptedModel(researcher_only(calls_flaky_once)), "g"
    )
    assert run.types("a") == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "tool_call_requested",
        "tool_call_retry_scheduled",
        "tool_call_retry_scheduled",
        "tool_call_retry_scheduled",
        "tool_call_completed",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]
    retries = run.of_type("tool_call_retry_scheduled")
    assert [(e.attempt, e.max_attempts, e.error_kind, e.error) for e in retries] == [
        (1, 4, "transient", "service hiccup #1"),
        (2, 4, "transient", "service hiccup #2"),
        (3, 4, "transient", "service hiccup #3"),
    ]
    caps = [0.001, 0.002, 0.003]  # base * 2^(n-1), capped at backoff_max_s
    assert all(0 <= e.delay_s <= cap for e, cap in zip(retries, caps, strict=True))
    requested = of(run, "tool_call_requested")[0]
    (completed,) = run.of_type("tool_call_completed")
    # each retry is caused by the one before: a chain a resume can pick up anywhere
    assert [e.causation_id for e in [*retries, completed]] == [
        requested.event_id,
        *(e.event_id for e in retries),
    ]
    assert runs == ["q"] * 4 and completed.result == {"answer": "q"}


async def test_when_attempts_run_out_the_call_fails_with_the_last_error_and_the_count():
    flaky_tool, runs = flaky(10, max_attempts=3)
    run = await run_goal(
        workflow(flaky_tool), ScriptedModel(researcher_only(calls_flaky_once)), "g"
    )
    assert run.types("a")[3:7] == [
        "tool_call_requested",
        "tool_call_retry_scheduled",
        "tool_call_retry_scheduled",
        "tool_call_failed",
    ]
    (failed,) = run.of_type("tool_call_failed")
    assert (failed.error_kind, failed.message) == (
        "transient",
        "service hiccup #3 (after 3 attempts)",
    )
    assert len(runs) == 3 and run.state.status == "completed"  # the agent was told, and went on


@pytest.mark.parametrize(
    ("options", "exc", "why"),
    [
        ({}, ToolError, "a permanent error is not retried"),
        ({"side_effect": True}, TransientToolError, "a side effect is not repeated"),
    ],
)
async def test_failures_that_must_not_be_retried_fail_at_once(options, exc, why):
    flaky_tool, runs = flaky(10, exc=exc, **options)
    run = await run_goal(
        workflow(flaky_tool), ScriptedModel(researcher_only(calls_flaky_once)), "g"
    )
    outcome = ["tool_call_failed"]
    if options.get("side_effect"):
        outcome = ["tool_call_started", "tool_call_failed"]
    assert run.types("a")[3:] == [
        "tool_call_requested",
        *outcome,
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ], why
    assert run.of_type("tool_call_failed")[0].message == "service hiccup #1"
    assert len(runs) == 1


async def test_a_dropped_connection_is_transient():
    flaky_tool, runs = flaky(1, exc=ConnectionResetError)
    run = await run_goal(
        workflow(flaky_tool), ScriptedModel(researcher_only(calls_flaky_once)), "g"
    )
    (retry,) = run.of_type("tool_call_retry_scheduled")
    assert (retry.error_kind, retry.error) == (
        "connection_error",
        "ConnectionResetError: service hiccup #1",
    )
    assert len(run.of_type("tool_call_completed")) == 1 and len(runs) == 2


async def test_a_side_effecting_tool_declared_safe_to_retry_is_retried():
    flaky_tool, runs = flaky(1, side_effect=True, safe_to_retry=True)
    run = await run_goal(
        workflow(flaky_tool), ScriptedModel(researcher_only(calls_flaky_once)), "g"
    )
    assert run.types("a")[3:7] == [
        "tool_call_requested",
        "tool_call_started",
        "tool_call_retry_scheduled",
        "tool_call_completed",
    ]
    assert len(runs) == 2


async def test_a_timeout_of_a_read_only_tool_is_transient():
    import asyncio

    slow_runs: list[int] = []

    @tool(timeout_s=0.01, backoff_base_s=0.001, max_attempts=2)
    async def slow(query: str) -> dict:
        """Slow the first time."""
        slow_runs.append(1)
        if len(slow_runs) == 1:
            await asyncio.sleep(1)
        return {"answer": query}

    model = ScriptedModel(
        researcher_only(
            lambda r: (
                call_tool("slow", query="q") if r.iteration == 1 else reply_json({"summary": "ok!"})
            )
        )
    )
    run = await run_goal(workflow(slow), model, "g")
    (retry,) = run.of_type("tool_call_retry_scheduled")
    assert (retry.error_kind, retry.attempt) == ("timeout", 1)
    assert run.types("a")[3:6] == [
        "tool_call_requested",
        "tool_call_retry_scheduled",
        "tool_call_completed",
    ]


async def test_a_resume_after_a_crash_continues_the_scheduled_retry():
    flaky_tool, runs = flaky(1)
    wf = workflow(flaky_tool)
    full = await run_goal(wf, ScriptedModel(researcher_only(calls_flaky_once)), "g")
    history = full.events
    (retry,) = [e for e in history if e.type == "tool_call_retry_scheduled"]
    log = MemoryEventLog()
    await log.append(history[: retry.seq])  # the process died while waiting to retry
    assert len(runs) == 2  # attempt 1 failed, attempt 2 succeeded (in the full run)
    runner = EmbeddedRunner(log, make_runtime(wf, ScriptedModel(researcher_only(calls_flaky_once))))
    state = await runner.run(full.task_id)
    resumed = (await task_events(log, full.task_id))[retry.seq :]
    assert state.status == "completed"
    assert [e.type for e in resumed[:2]] == ["tool_call_completed", "agent_step_started"]
    assert resumed[0].causation_id == retry.event_id  # attempt 2, not a new first attempt
    assert len(runs) == 3  # one more run: the retried attempt only
    assert Counter(e.type for e in resumed)["tool_call_requested"] == 0


# --- context compaction ----------------------------------------------------------------------

COMPACTING = ContextSettings(max_tokens=400, keep_recent_turns=2)


def four_searches(summary: list[ModelResponse | Exception]) -> ScriptedModel:
    return ScriptedModel(
        {
            "planner": [plan({"id": "a", "agent": "researcher"})],
            "researcher": [
                *(call_tool("search", query=f"q{i}") for i in range(1, 5)),
                reply_json({"summary": "all four read"}),
            ],
            "researcher:summary": summary,
        }
    )


async def test_a_context_over_its_threshold_is_summarised_by_the_agents_model():
    model = four_searches([reply("SUMMARY: q1..q3 are about notes")])
    run = await run_goal(workflow(context=COMPACTING), model, "g")
    assert run.types("a") == [
        "subtask_assigned",
        *STEP * 4,
        "agent_step_started",
        "context_summarized",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]
    (event,) = run.of_type("context_summarized")
    step4 = of(run, "llm_call_completed")[3]
    last_turns_estimate = event.tokens_before - step4.usage.input_tokens
    assert 0 < last_turns_estimate < 100  # the reported count of call 4 + its answer and result
    assert event.tokens_after < event.threshold == 400 < event.tokens_before
    assert (event.iteration, event.turns_compacted, event.method) == (5, 6, "model")
    assert event.summary == "SUMMARY: q1..q3 are about notes" and event.fallback_reason is None
    # the summary call is marked and counted in the budget like any LLM call
    ask = next(c for c in model.calls if c.purpose == "summary")
    assert (
        ask.agent == "researcher" and ask.tools == [] and "note about q1" in ask.messages[1].content
    )
    assert event.usage.input_tokens > 0
    steps = run.of_type("llm_call_completed")
    assert run.state.llm_calls == len(steps) + 1
    assert (
        run.state.tokens_in == sum(c.usage.input_tokens for c in steps) + event.usage.input_tokens
    )
    # the next prompt holds the summary and the last two turns, not the old turns
    after = model.calls[-1]
    assert after.purpose == "step" and after.iteration == 5
    turns = after.messages[2:]
    assert turns[0].role == "user"
    assert turns[0].content.startswith(SUMMARY_HEADER.format(n=6))
    assert event.summary in turns[0].content
    assert [t.role for t in turns[1:]] == ["assistant", "tool"]
    prompt = " ".join(m.content or "" for m in after.messages)
    assert "note about q4" in prompt
    assert not any(f"note about q{i}" in prompt for i in (1, 2, 3))
    # the state holds the compacted context too
    assert run.state.subtasks["a"].turns[0] == turns[0]
    assert run.state.status == "completed"


async def test_a_failed_summary_call_falls_back_to_an_extractive_summary():
    model = four_searches([ModelError("context too long", kind="context_length")])
    run = await run_goal(workflow(context=COMPACTING), model, "g")
    (event,) = run.of_type("context_summarized")
    assert event.method == "extractive"
    assert event.fallback_reason == "context_length: context too long"
    lines = event.summary.splitlines()
    assert lines[0] == '- you called search({"query":"q1"})'
    assert lines[1].startswith('- search returned: {"hits":["note about q1:')
    assert len(lines) == 6  # every compacted turn keeps a line within the size cap
    assert len(event.summary) <= COMPACTING.max_tokens
    assert event.usage.input_tokens == 0 and event.cost_usd == 0
    assert event.tokens_after < event.tokens_before
    assert run.state.status == "completed"


async def test_a_resume_after_compaction_prompts_with_the_compacted_context():
    wf = workflow(context=COMPACTING)
    full = await run_goal(wf, four_searches([reply("SUMMARY: earlier searches")]), "g")
    (event,) = full.of_type("context_summarized")
    log = MemoryEventLog()
    await log.append(full.events[: event.seq])  # died before the step's own LLM call
    model = ScriptedModel({"researcher": [reply_json({"summary": "resumed fine"})]})
    state = await EmbeddedRunner(log, make_runtime(wf, model)).run(full.task_id)
    assert state.status == "completed"
    (request,) = model.calls  # no second summary: the log already has it
    assert request.messages[2].content.startswith(SUMMARY_HEADER.format(n=6))
    assert "SUMMARY: earlier searches" in request.messages[2].content
    assert len(request.messages) == 5


def test_limits_doc_names_every_guard_setting():
    import re
    from pathlib import Path

    from agentledger.agents.workflow import Limits

    doc = (Path(__file__).parents[2] / "docs" / "limits.md").read_text()
    keys = [
        *Limits.model_fields,
        *BreakerSettings.model_fields,
        *ContextSettings.model_fields,
        "warn_iterations",
        "max_iterations",
        "max_repairs",
        "max_repeated_calls",
        "timeout_s",
        "max_attempts",
        "backoff_base_s",
        "backoff_max_s",
        "safe_to_retry",
    ]
    assert [k for k in keys if not re.search(rf"\b{k}\b", doc)] == []
    events = ["limit_reached", "plan_rejected", "output_rejected", "tool_call_rejected"]
    events += ["circuit_state_changed", "tool_call_retry_scheduled", "context_summarized"]
    assert [e for e in events if f"`{e}`" not in doc] == []
