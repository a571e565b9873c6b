"""Budgets that a server cannot blind, prices by where a call went, and every LLM attempt on
the record: runs against the real OpenAI-compatible HTTP server, audited with chdb."""

# The shared fixtures are imported (conftest.py is not ours), so their names are "redefined"
# ruff: noqa: F811

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentledger.agents.workflow import AgentSpec, Limits, Workflow
from agentledger.audit import analytics
from agentledger.audit.cli import main as cli_main
from agentledger.audit.projection import AuditProjection
from agentledger.audit.store import AuditStore
from agentledger.llm import ModelPrice
from agentledger.llm.base import ModelSettings
from agentledger.llm.openai_client import OpenAIChatModel, RetryPolicy
from agentledger.schemas import Plan, PlannedSubtask
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import RunResult, run_goal
from tests.support.audit import (  # fixtures are imported to be found by pytest
    audit_chdb_dir,  # noqa: F401
    audit_database,  # noqa: F401
    audit_store,  # noqa: F401
    audit_url,  # noqa: F401
)
from tests.support.openai_server import (
    OpenAIStubServer,
    answer,
    json_answer,
    no_usage,
    rate_limited,
    server_error,
    tool_call_reply,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEY_ENV = "AGENTLEDGER_TEST_BUDGET_KEY"
FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
WRITE_ONE = Plan(subtasks=[PlannedSubtask(id="w", agent="writer", description="write")])
WRITE_TWO = Plan(
    subtasks=[
        PlannedSubtask(id="w1", agent="writer", description="write one"),
        PlannedSubtask(id="w2", agent="writer", description="write two"),
    ]
)

Runner = Callable[..., Any]


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAIStubServer]:
    monkeypatch.setenv(KEY_ENV, "sk-budget-test-0123456789")
    async with OpenAIStubServer() as stub:
        yield stub


def settings_for(server: OpenAIStubServer, model: str, **extra: Any) -> ModelSettings:
    fields: dict[str, Any] = {
        "provider": "openai",
        "model": model,
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
    }
    fields.update(extra)
    return ModelSettings(**fields)


async def run_writer(
    settings: ModelSettings,
    *,
    limits: Limits | None = None,
    plan: Plan = WRITE_ONE,
    prices: dict[str, ModelPrice] | None = None,
    log: SqliteEventLog | None = None,
    api_version: str | None = None,
) -> RunResult:
    """One writer on the given model, a static plan (no planner call)."""
    workflow = Workflow.build(
        name="budgets",
        orchestrator="planner",
        agents=[AgentSpec("planner", routes_to=("writer",)), AgentSpec("writer", model=settings)],
        plan=plan,
        limits=limits,
        prices=prices,
    )
    async with OpenAIChatModel(settings, retry=FAST, api_version=api_version) as model:
        return await run_goal(workflow, model, "write it", log=log)


# -- usage ------------------------------------------------------------------------------


async def test_a_server_that_sends_no_usage_still_trips_max_tokens(
    server: OpenAIStubServer,
) -> None:
    server.enqueue(no_usage(answer("Kafka keeps an ordered, replicated log of records.")))

    run = await run_writer(settings_for(server, "gpt-4o-mini"), limits=Limits(max_tokens=5))

    server.assert_complete()
    assert run.types()[-3:] == ["llm_call_completed", "limit_reached", "task_failed"]
    (call,) = run.of_type("llm_call_completed")
    assert call.usage_source == "estimated"
    used = call.usage.input_tokens + call.usage.output_tokens
    assert (
        call.usage.output_tokens == len("Kafka keeps an ordered, replicated log of records.") // 4
    )
    (limit,) = run.of_type("limit_reached")
    assert (limit.limit, limit.scope, limit.severity, limit.value, limit.threshold) == (
        "tokens",
        "task",
        "stop",
        used,
        5,
    )
    (failed,) = run.of_type("task_failed")
    assert failed.error_kind == "budget_exceeded"
    assert failed.reason == f"task budget exceeded: tokens {used} > 5"


# -- prices -----------------------------------------------------------------------------


async def test_an_unknown_model_is_unpriced_and_warned_about_once(
    server: OpenAIStubServer,
) -> None:
    server.enqueue(answer("one", prompt_tokens=40), answer("two", prompt_tokens=40))

    run = await run_writer(
        settings_for(server, "llama3.1:8b"), limits=Limits(max_cost_usd=0.5), plan=WRITE_TWO
    )

    assert run.types()[-1] == "task_completed"
    calls = run.of_type("llm_call_completed")
    assert [(c.unpriced, c.cost_usd, c.usage_source) for c in calls] == [
        (True, 0.0, "reported"),
        (True, 0.0, "reported"),
    ]
    (warning,) = run.of_type("limit_reached")
    assert (warning.limit, warning.scope, warning.severity, warning.value, warning.threshold) == (
        "unpriced_calls",
        "task",
        "warning",
        1,
        0,
    )
    assert warning.causation_id == calls[0].event_id
    assert "no price is known for model 'llama3.1:8b' (openai)" in warning.detail
    assert run.state.unpriced_calls == 2


async def test_strict_mode_refuses_the_call_to_an_unpriced_model(
    server: OpenAIStubServer,
) -> None:
    limits = Limits(max_cost_usd=0.5, unpriced_calls="refuse")

    run = await run_writer(settings_for(server, "llama3.1:8b"), limits=limits)

    assert server.chat_requests == []  # the call was never made
    assert run.types()[-3:] == ["agent_step_started", "limit_reached", "task_failed"]
    (limit,) = run.of_type("limit_reached")
    assert (limit.limit, limit.severity) == ("unpriced_calls", "stop")
    (failed,) = run.of_type("task_failed")
    assert failed.error_kind == "unpriced_model"
    assert failed.reason.startswith("model 'llama3.1:8b' has no known price")


async def test_an_openai_name_behind_another_server_is_not_charged_openais_price(
    server: OpenAIStubServer,
) -> None:
    server.enqueue(answer("ok", prompt_tokens=1000, completion_tokens=100))

    run = await run_writer(settings_for(server, "gpt-4o-mini"))

    (call,) = run.of_type("llm_call_completed")
    assert (call.unpriced, call.cost_usd) == (True, 0.0)
    assert run.of_type("limit_reached") == []  # no cost budget: nothing to warn about


async def test_a_workflow_declares_the_price_of_an_alias(server: OpenAIStubServer) -> None:
    server.enqueue(answer("ok", prompt_tokens=1000, completion_tokens=100))
    price = ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)

    run = await run_writer(
        settings_for(server, "llama3.1:8b"),
        limits=Limits(max_cost_usd=0.5, unpriced_calls="refuse"),
        prices={"llama3.1:8b": price},
    )

    (call,) = run.of_type("llm_call_completed")
    assert (call.unpriced, call.priced_as) == (False, None)
    assert call.cost_usd == pytest.approx((1000 * 1.0 + 100 * 2.0) / 1e6)
    assert run.types()[-1] == "task_completed"


async def test_azure_is_priced_by_the_model_the_response_reports(
    server: OpenAIStubServer,
) -> None:
    server.enqueue(
        answer("ok", model="gpt-4o-mini-2024-07-18", prompt_tokens=1000, completion_tokens=100)
    )
    settings = ModelSettings(
        provider="azure", model="prod-chat", base_url=server.origin, api_key_env=KEY_ENV
    )

    run = await run_writer(settings, limits=Limits(max_cost_usd=1.0), api_version="2024-10-21")

    (sent,) = server.chat_requests
    assert sent.path == "/openai/deployments/prod-chat/chat/completions"
    (call,) = run.of_type("llm_call_completed")
    assert (call.model, call.provider, call.priced_as) == (
        "prod-chat",
        "azure",
        "gpt-4o-mini-2024-07-18",
    )
    assert not call.unpriced
    assert call.cost_usd == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)


# -- attempts ---------------------------------------------------------------------------


async def test_each_failed_attempt_is_an_event_and_analytics_count_them(
    server: OpenAIStubServer,
    tmp_path: Path,
    audit_store: AuditStore,
    audit_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.enqueue(
        rate_limited(retry_after="0.2"),
        rate_limited(retry_after="0.1"),
        answer("after two waits"),
        server_error(500),
        answer("after a 500"),
    )
    log = SqliteEventLog(tmp_path / "ledger.db", synchronous="NORMAL")
    try:
        settings = settings_for(server, "gpt-4o-mini", max_retries=3)
        first = await run_writer(settings, log=log)
        second = await run_writer(settings, log=log)
        await AuditProjection(log, audit_store).catch_up()
    finally:
        await log.close()

    server.assert_complete()
    assert first.types()[-7:] == [
        "agent_step_started",
        "llm_attempt_failed",
        "llm_attempt_failed",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
        "task_completed",
    ]
    step = first.of_type("agent_step_started")[0]
    attempts = first.of_type("llm_attempt_failed")
    shown = [
        (a.attempt, a.status_code, a.error_kind, a.retry_after_s, a.model, a.causation_id)
        for a in attempts
    ]
    assert shown == [
        (1, 429, "rate_limited", 0.2, "gpt-4o-mini", step.event_id),
        (2, 429, "rate_limited", 0.1, "gpt-4o-mini", step.event_id),
    ]
    assert 0.2 <= attempts[0].delay_s <= 0.2 + FAST.base_delay_s
    assert 0.1 <= attempts[1].delay_s <= 0.1 + FAST.base_delay_s
    assert attempts[0].message.startswith("rate limited (HTTP 429)")
    # the waits were honoured: the server saw the retries no sooner than it asked
    times = [r.received_at for r in server.chat_requests[:3]]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.1
    (done,) = first.of_type("llm_call_completed")
    assert done.attempts == 3 and done.causation_id == step.event_id
    (recovered,) = second.of_type("llm_attempt_failed")
    assert (recovered.status_code, recovered.error_kind) == (500, "server_error")

    by_error = {r.key: r for r in analytics.failures(audit_store, "error")}
    assert by_error["rate_limited"].failures == 2
    assert by_error["server_error"].failures == 1
    assert by_error["rate_limited"].detail == "llm_attempt_failed"

    code = cli_main(
        [
            "--db",
            str(tmp_path / "ledger.db"),
            "analytics",
            "failures",
            "--by",
            "error",
            "--clickhouse",
            audit_url,
            "--format",
            "json",
        ]
    )
    assert code == 0
    rows = {r["key"]: r["failures"] for r in orjson.loads(capsys.readouterr().out)}
    assert rows == {"rate_limited": 2, "server_error": 1}


async def test_cost_analytics_show_unpriced_and_estimated_calls(
    server: OpenAIStubServer, tmp_path: Path, audit_store: AuditStore
) -> None:
    server.enqueue(no_usage(answer("a local model's answer")))
    log = SqliteEventLog(tmp_path / "ledger.db", synchronous="NORMAL")
    try:
        await run_writer(settings_for(server, "llama3.1:8b"), log=log)
        await AuditProjection(log, audit_store).catch_up()
    finally:
        await log.close()

    (row,) = analytics.cost(audit_store, "model")
    assert (row.key, row.calls, row.cost_usd, row.unpriced_calls, row.estimated_calls) == (
        "llama3.1:8b",
        1,
        0.0,
        1,
        1,
    )


DELIVERIES = Path(__file__).parent.parent / "fixtures" / "deliveries" / "workflow.yaml"


def _ledger_events(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [orjson.loads(r[0]) for r in con.execute("SELECT data FROM events ORDER BY offset")]
    finally:
        con.close()


def test_a_run_killed_while_waiting_out_a_429_resumes_with_one_clean_call(
    tmp_path: Path,
) -> None:
    """Attempt events are appended with the call's outcome, in one batch: a process killed
    during the Retry-After wait leaves no trace of the attempt, and resume makes the call
    again, so every step has exactly one outcome and no attempt event is orphaned."""
    plan = {
        "subtasks": [
            {"id": "p1", "agent": "courier", "description": "deliver p1"},
            {"id": "report", "agent": "reporter", "description": "report", "depends_on": ["p1"]},
        ]
    }
    replies = [
        json_answer(plan),
        rate_limited(retry_after="30"),  # the run is killed while it waits
        tool_call_reply(("deliver", {"parcel": "p1", "address": "1 Main Street"})),
        json_answer({"parcel": "p1", "delivered": True}),
        answer("p1 was delivered"),
    ]
    db = tmp_path / "ledger.db"
    with OpenAIStubServer(replies, models=("gpt-4o-mini",)) as stub:
        env = {
            **os.environ,
            "AGENTLEDGER_HOME": str(tmp_path),
            "AGENTLEDGER_MODEL_PROVIDER": "openai",
            "AGENTLEDGER_MODEL_NAME": "gpt-4o-mini",
            "AGENTLEDGER_MODEL_BASE_URL": stub.base_url,
        }
        cli = [sys.executable, "-m", "agentledger.cli"]
        run = subprocess.Popen(
            [*cli, "run", str(DELIVERIES), "--goal", "deliver p1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not any(r.status == 429 for r in stub.chat_requests):
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the run never met the 429"
                time.sleep(0.02)
            run.send_signal(signal.SIGKILL)
        finally:
            if run.poll() is None:
                run.kill()
            run.communicate(timeout=10)
        before = _ledger_events(db)
        task_id = before[0]["task_id"]
        assert before[-1]["type"] == "agent_step_started"  # the call's batch never landed
        resumed = subprocess.run(
            [*cli, "resume", task_id], env=env, capture_output=True, text=True, timeout=60
        )
        assert resumed.returncode == 0, resumed.stderr
        stub.assert_complete()

    after = _ledger_events(db)
    assert after[: len(before)] == before
    assert after[-1]["type"] == "task_completed"
    assert [e for e in after if e["type"] == "llm_attempt_failed"] == []
    courier_step = before[-1]["event_id"]
    (call,) = [e for e in after if e["causation_id"] == courier_step]  # one outcome, no attempts
    assert call["type"] == "llm_call_completed"
    assert call["attempts"] == 1
