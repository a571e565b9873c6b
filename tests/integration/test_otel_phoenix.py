"""OpenTelemetry spans computed from the log, exported to a real OTLP receiver (Arize Phoenix,
in its own virtualenv) and read back through Phoenix's REST API."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentledger.agents.workflow import load_workflow
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel
from agentledger.otel.export import SpanSender
from agentledger.otel.follow import follow
from agentledger.otel.spans import span_id_of, trace_id_of
from agentledger.schemas import TaskFailed
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, task_events
from tests.support.cli import cli
from tests.support.phoenix import Phoenix

FIXTURES = Path(__file__).parent.parent / "fixtures" / "console"
WORKFLOW = FIXTURES / "workflow.yaml"
sys.path.insert(0, str(FIXTURES))
from console_model import respond  # noqa: E402

pytestmark = pytest.mark.integration


def by_name(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        out.setdefault(s["name"], []).append(s)
    return out


def test_export_of_a_past_run_has_the_genai_spans_parents_and_attributes(
    tmp_path: Path, phoenix: Phoenix
) -> None:
    db = str(tmp_path / "ledger.db")
    code, out, err = cli("--db", db, "run", str(WORKFLOW), "--goal", "count orders", "-q")
    assert code == 0, err
    task_id = out.strip().splitlines()[-1].split()[1]
    project = f"t-{uuid.uuid4().hex[:8]}"
    args = [
        "--db",
        db,
        "otel",
        "export",
        task_id,
        "--endpoint",
        phoenix.traces_endpoint,
        "--resource",
        f"openinference.project.name={project}",
    ]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "exported 9 spans" in out  # 1 workflow + 3 agent attempts + 4 chats + 1 tool

    spans = phoenix.wait_spans(project, 9)
    names = by_name(spans)
    assert sorted(names) == [
        "chat scripted",
        "execute_tool count_rows",
        "invoke_agent gatherer",
        "invoke_agent planner",
        "invoke_agent writer",
        "invoke_workflow console-demo",
    ]
    assert len(names["chat scripted"]) == 4 and len(names["invoke_agent planner"]) == 1
    trace = f"{trace_id_of(task_id):032x}"
    assert {s["context"]["trace_id"] for s in spans} == {trace}  # derived from the task id

    root = names["invoke_workflow console-demo"][0]
    assert root["parent_id"] is None
    assert root["context"]["span_id"] == f"{span_id_of(task_id, 'task'):016x}"
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_workflow"
    assert root["attributes"]["agentledger.task_id"] == task_id
    root_id = root["context"]["span_id"]

    gatherer = names["invoke_agent gatherer"][0]
    assert gatherer["parent_id"] == root_id
    assert gatherer["attributes"]["gen_ai.agent.name"] == "gatherer"
    assert gatherer["attributes"]["agentledger.attempt"] == 1

    tool = names["execute_tool count_rows"][0]
    assert tool["parent_id"] == gatherer["context"]["span_id"]
    assert tool["attributes"]["gen_ai.tool.name"] == "count_rows"
    assert tool["attributes"]["gen_ai.tool.call.id"]
    assert "gen_ai.tool.call.arguments" not in tool["attributes"]  # content off by default

    chats = [c for c in names["chat scripted"] if c["parent_id"] == gatherer["context"]["span_id"]]
    assert len(chats) == 2
    chat = chats[0]["attributes"]
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.provider.name"] == "scripted"
    assert chat["gen_ai.request.model"] == "scripted"
    assert chat["gen_ai.response.model"] == "scripted"
    assert chat["gen_ai.usage.input_tokens"] > 0 and chat["gen_ai.usage.output_tokens"] > 0
    assert chat["gen_ai.response.finish_reasons"] in (["tool_calls"], ["stop"])
    assert chat["agentledger.cost_usd"] == 0.0
    assert "gen_ai.output.messages" not in chat
    # times come from the events: the children sit inside the workflow span
    assert all(
        root["start_time"] <= s["start_time"] <= s["end_time"] <= root["end_time"] for s in spans
    )

    # a second export of the same run sends the very same spans (same ids)
    code, _, err = cli(*args)
    assert code == 0, err
    again = phoenix.wait_spans(project, 18, timeout_s=2)
    assert {s["context"]["span_id"] for s in again} == {s["context"]["span_id"] for s in spans}
    assert len(again) == len(spans)  # Phoenix keeps one span per span id


def test_content_is_off_by_default_and_masked_when_on(tmp_path: Path, phoenix: Phoenix) -> None:
    db = str(tmp_path / "ledger.db")
    code, out, err = cli("--db", db, "run", str(WORKFLOW), "--goal", "count orders", "-q")
    assert code == 0, err
    task_id = out.strip().splitlines()[-1].split()[1]
    project = f"c-{uuid.uuid4().hex[:8]}"
    code, _, err = cli(
        "--db",
        db,
        "otel",
        "export",
        "--since",
        "2000-01-01",
        "--content",
        "--endpoint",
        phoenix.traces_endpoint,
        "--resource",
        f"openinference.project.name={project}",
    )
    assert code == 0, err
    stored = phoenix.wait_spans(project, 9)
    assert {s["context"]["trace_id"] for s in stored} == {f"{trace_id_of(task_id):032x}"}
    spans = by_name(stored)
    tool = spans["execute_tool count_rows"][0]["attributes"]
    assert '"orders"' in tool["gen_ai.tool.call.arguments"]
    assert '"rows":42' in tool["gen_ai.tool.call.result"]
    outputs = " ".join(c["attributes"]["gen_ai.output.messages"] for c in spans["chat scripted"])
    assert "42 rows; contact" in outputs
    assert "ops@example.com" not in outputs  # masked


async def test_follow_exports_spans_live_and_marks_errors(tmp_path: Path, phoenix: Phoenix) -> None:
    def failing_writer(request: ModelRequest) -> ModelResponse:
        if request.agent == "writer":
            raise ValueError("the writer model is down")
        return respond(request)

    log = SqliteEventLog(tmp_path / "ledger.db")
    project = f"f-{uuid.uuid4().hex[:8]}"
    sender = SpanSender(
        phoenix.traces_endpoint, resource_attributes={"openinference.project.name": project}
    )
    stop = asyncio.Event()
    exporter = asyncio.create_task(
        follow(log, sender, content=False, stop=stop, poll_interval=0.05)
    )
    try:
        workflow = load_workflow(WORKFLOW)
        runner = EmbeddedRunner(
            log, make_runtime(workflow, ScriptedModel(failing_writer), sandbox=tmp_path / "sandbox")
        )
        task_id = await runner.submit("count orders")
        state = await runner.run(task_id)
        assert state.status == "failed"
        failed = [e for e in await task_events(log, task_id) if isinstance(e, TaskFailed)]
        spans = await asyncio.to_thread(phoenix.wait_spans, project, 1)
        deadline = asyncio.get_running_loop().time() + 30
        while not any(s["name"].startswith("invoke_workflow") for s in spans):
            assert asyncio.get_running_loop().time() < deadline, spans
            spans = await asyncio.to_thread(phoenix.spans, project)
    finally:
        stop.set()
        sent = await asyncio.wait_for(exporter, 30)
    assert sent == len(spans)
    names = by_name(spans)
    root = names["invoke_workflow console-demo"][0]
    assert root["status_code"] == "ERROR"
    assert root["attributes"]["error.type"] == failed[0].error_kind
    writer = names["invoke_agent writer"]
    assert any(w["status_code"] == "ERROR" and w["attributes"].get("error.type") for w in writer)

    # a restart resumes from the stored position: spans opened before it (the workflow and
    # the writer's attempt) are rebuilt from the log and finished, nothing is sent twice
    gate = asyncio.Event()

    async def gated(request: ModelRequest) -> ModelResponse:
        if request.agent == "writer":
            await gate.wait()
        return respond(request)

    runner = EmbeddedRunner(
        log, make_runtime(workflow, ScriptedModel(gated), sandbox=tmp_path / "sandbox")
    )
    second = await runner.submit("count orders again")
    running = asyncio.create_task(runner.run(second))
    stop = asyncio.Event()
    exporter = asyncio.create_task(
        follow(log, sender, content=False, stop=stop, poll_interval=0.05)
    )
    try:
        for _ in range(1500):  # poll the log (30 s at most) until the follower is idle there
            writer_waits = any(
                e.type == "agent_step_started" and e.agent == "writer"
                for e in await task_events(log, second)
            )
            if writer_waits and await log.get_position("otel-export") >= await log.last_offset():
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the follower never caught up with the paused run")
        stop.set()
        before_restart = await asyncio.wait_for(exporter, 30)
        assert before_restart == 6  # planner (attempt, chat), gatherer (attempt, 2 chats, tool)
        gate.set()
        assert (await running).status == "completed"
        stop = asyncio.Event()
        exporter = asyncio.create_task(
            follow(log, sender, content=False, stop=stop, poll_interval=0.05)
        )
        trace = f"{trace_id_of(second):032x}"
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            mine = [
                s
                for s in await asyncio.to_thread(phoenix.spans, project)
                if s["context"]["trace_id"] == trace
            ]
            if any(s["name"].startswith("invoke_workflow") for s in mine):
                break
            assert asyncio.get_running_loop().time() < deadline, mine
            await asyncio.sleep(0.1)
    finally:
        gate.set()
        stop.set()
        after_restart = await asyncio.wait_for(exporter, 30)
        await asyncio.wait_for(running, 30)
        sender.close()
        await log.close()
    assert after_restart == 3  # the writer's chat and attempt, and the workflow
    assert len(mine) == 9
    root = by_name(mine)["invoke_workflow console-demo"][0]
    assert all(root["start_time"] <= s["start_time"] for s in mine)


async def test_follow_on_a_first_start_exports_only_new_runs(
    tmp_path: Path, phoenix: Phoenix
) -> None:
    """No stored position and no --from-start: past runs stay unexported, new ones go out."""
    log = SqliteEventLog(tmp_path / "ledger.db")
    workflow = load_workflow(WORKFLOW)
    runner = EmbeddedRunner(
        log, make_runtime(workflow, ScriptedModel(respond), sandbox=tmp_path / "sandbox")
    )
    past = await runner.submit("count orders")
    assert (await runner.run(past)).status == "completed"

    project = f"n-{uuid.uuid4().hex[:8]}"
    sender = SpanSender(
        phoenix.traces_endpoint, resource_attributes={"openinference.project.name": project}
    )
    stop = asyncio.Event()
    exporter = asyncio.create_task(
        follow(log, sender, content=False, stop=stop, poll_interval=0.05, consumer="first-start")
    )
    try:
        new = await runner.submit("count orders again")
        assert (await runner.run(new)).status == "completed"
        trace = f"{trace_id_of(new):032x}"
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            spans = await asyncio.to_thread(phoenix.spans, project)
            if any(
                s["context"]["trace_id"] == trace and s["name"].startswith("invoke_workflow")
                for s in spans
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, spans
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(exporter, 30)
    traces = {s["context"]["trace_id"] for s in spans}
    assert traces == {trace}  # nothing of the run that ended before the follower started
