"""MCP tools against real MCP servers built with the ``mcp`` SDK: one a stdio subprocess,
one served over streamable HTTP on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentledger.agents.approvals import decision
from agentledger.agents.workflow import load_workflow
from agentledger.llm import ScriptedModel
from agentledger.llm.scripted import call_tool, reply
from agentledger.schemas.mcp import McpToolsPinned
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.log import Recorded
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, task_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """
name: mcp-test
pattern: peer_to_peer
entry: agent
model: {{provider: scripted}}
mcp_servers:
  kb: {{{server}}}
tools:
  kb_lookup: {{mcp: kb/lookup, risk: read, side_effect: false, max_attempts: 3, backoff_base_s: 0.01}}
  open_ticket: {{mcp: kb/create_ticket, risk: write, side_effect: true}}
  flaky: {{mcp: kb/crash, risk: read, side_effect: false, max_attempts: 3, backoff_base_s: 0.01}}
  missing: {{mcp: kb/not_there, risk: read, side_effect: false}}
agents:
  agent:
    tools: [kb_lookup, open_ticket, flaky, missing]
"""


def _stdio(tmp_path: Path) -> str:
    return (
        f'command: [python, -m, tests.support.mcp_server, stdio], cwd: "{ROOT}", '
        f'env: {{MCP_TEST_LEDGER: "{tmp_path / "tickets.log"}", '
        f'MCP_TEST_CRASH_MARK: "{tmp_path / "crashed"}"}}'
    )


def _write(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW.format(server=server))
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ledger = tmp_path / "tickets.log"
    # The HTTP server inherits these; the stdio one gets them from its `env` entry.
    monkeypatch.setenv("MCP_TEST_LEDGER", str(ledger))
    monkeypatch.setenv("MCP_TEST_CRASH_MARK", str(tmp_path / "crashed"))
    return ledger


async def _run(workflow_path: Path, log, turns, *, task_id: str | None = None):
    workflow = load_workflow(workflow_path)
    model = ScriptedModel({"agent": turns}) if not callable(turns) else ScriptedModel(turns)
    runtime = make_runtime(workflow, model)
    try:
        runner = EmbeddedRunner(log, runtime)
        task_id = task_id or await runner.submit("look it up")
        state = await runner.run(task_id)
    finally:
        await runtime.aclose()
    return state, await task_events(log, task_id), workflow


async def test_stdio_tools_are_pinned_called_and_validated(tmp_path: Path, env: Path):
    log = SqliteEventLog(tmp_path / "ledger.db")
    state, events, _ = await _run(
        _write(tmp_path, _stdio(tmp_path)),
        log,
        [
            call_tool("kb_lookup", topic="refunds"),
            call_tool("kb_lookup", topic=3),
            call_tool("missing", x=1),
            call_tool("slow", seconds=1),  # on the server, but not declared: unreachable
            reply("done"),
        ],
    )
    assert state.status == "completed"
    [pin] = [e for e in events if isinstance(e, McpToolsPinned)]
    assert pin.server == "kb" and pin.transport == "stdio"
    assert {t.name: t.remote_name for t in pin.tools} == {
        "kb_lookup": "lookup",
        "open_ticket": "create_ticket",
        "flaky": "crash",
    }
    assert pin.tools[0].input_schema["required"] == ["topic"]
    [done] = [e for e in events if e.type == "tool_call_completed"]
    assert done.result == "Refunds are accepted within 30 days of delivery."
    rejected = [(e.tool, e.error_kind) for e in events if e.type == "tool_call_rejected"]
    assert rejected == [
        ("kb_lookup", "invalid_arguments"),
        ("missing", "invalid_arguments"),
        ("slow", "unknown_tool"),
    ]
    reasons = [e.reason for e in events if e.type == "tool_call_rejected"]
    assert "topic: 3 is not of type 'string'" in reasons[0]
    assert "no 'not_there' in its pinned tool list" in reasons[1]
    await log.close()


async def test_a_call_outside_the_agents_allow_list_is_refused(tmp_path: Path, env: Path):
    path = tmp_path / "wf.yaml"
    path.write_text(
        WORKFLOW.format(server=_stdio(tmp_path)).replace(
            "tools: [kb_lookup, open_ticket, flaky, missing]", "tools: [kb_lookup]"
        )
    )
    log = SqliteEventLog(tmp_path / "ledger.db")
    workflow = load_workflow(path)
    model = ScriptedModel(
        {"agent": [call_tool("open_ticket", customer="a", summary="b"), reply("no")]}
    )
    runtime = make_runtime(workflow, model)
    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("try")
    await runner.run(task_id)
    await runtime.aclose()
    events = await task_events(log, task_id)
    [refused] = [e for e in events if e.type == "tool_call_rejected"]
    assert (refused.tool, refused.error_kind) == ("open_ticket", "not_allowed")
    assert _lines(env) == 0  # the server never saw the call
    await log.close()


async def test_a_server_that_dies_mid_call_is_restarted_for_the_retry(tmp_path: Path, env: Path):
    log = SqliteEventLog(tmp_path / "ledger.db")
    path = _write(tmp_path, _stdio(tmp_path))
    workflow = load_workflow(path)
    runtime = make_runtime(
        workflow, ScriptedModel({"agent": [call_tool("flaky", note="hi"), reply("ok")]})
    )
    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("go")
    state = await runner.run(task_id)
    starts = workflow.mcp.connection("kb").starts if workflow.mcp else 0
    await runtime.aclose()
    events = await task_events(log, task_id)
    assert state.status == "completed"
    [retry] = [e for e in events if e.type == "tool_call_retry_scheduled"]
    assert retry.error_kind == "connection_error"
    assert "failed during the call" in retry.error
    [done] = [e for e in events if e.type == "tool_call_completed"]
    assert done.result == "survived: hi"
    assert starts == 2  # started once, died, started again
    await log.close()


async def test_idempotency_holds_across_resume(tmp_path: Path, env: Path):
    log = SqliteEventLog(tmp_path / "ledger.db")
    path = _write(tmp_path, _stdio(tmp_path))
    hang = asyncio.Event()

    async def first_run(request):
        if request.iteration == 1:
            return call_tool("open_ticket", customer="ada", summary="broken kettle")
        await hang.wait()  # the process "dies" here, after the ticket was opened
        raise AssertionError("unreachable")

    workflow = load_workflow(path)
    runtime = make_runtime(workflow, ScriptedModel(first_run))
    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("open a ticket")
    running = asyncio.create_task(runner.run(task_id))
    deadline = time.monotonic() + 30
    while not any(e.type == "tool_call_completed" for e in await task_events(log, task_id)):
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.02)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await runtime.aclose()

    # resume in a fresh runtime: new workflow object, new server process
    state, events, _ = await _run(path, log, [reply("ticket opened")], task_id=task_id)
    assert state.status == "completed"
    assert _lines(env) == 1  # the side effect ran once
    assert len([e for e in events if e.type == "mcp_tools_pinned"]) == 1  # pins adopted
    assert [e.type for e in events].count("tool_call_started") == 1
    await log.close()


def _lines(path: Path) -> int:
    """Lines in the server's side-effect ledger (0 when it never wrote one)."""
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(env: Path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_server", "http", str(port)],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the MCP HTTP server did not start: {proc.communicate()[1]!r}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()


async def test_streamable_http_tools_are_pinned_called_and_validated(
    tmp_path: Path, http_server: str
):
    log = SqliteEventLog(tmp_path / "ledger.db")
    state, events, _ = await _run(
        _write(tmp_path, f'url: "{http_server}"'),
        log,
        [
            call_tool("kb_lookup", topic="shipping"),
            call_tool("kb_lookup"),
            call_tool("open_ticket", customer="bo", summary="late parcel", priority="high"),
            reply("done"),
        ],
    )
    assert state.status == "completed"
    [pin] = [e for e in events if isinstance(e, McpToolsPinned)]
    assert pin.transport == "http"
    results = [e.result for e in events if e.type == "tool_call_completed"]
    assert results[0] == "Standard shipping takes five working days."
    assert results[1]["priority"] == "high"
    [rejected] = [e for e in events if e.type == "tool_call_rejected"]
    assert "'topic' is a required property" in rejected.reason
    stored = [e.event.type for e in await log.read_from(0) if isinstance(e, Recorded)]
    assert "mcp_tools_pinned" in stored
    await log.close()


async def test_approvals_injection_screening_and_timeouts_apply_to_mcp_tools(
    tmp_path: Path, env: Path
):
    path = tmp_path / "wf.yaml"
    path.write_text(
        WORKFLOW.format(server=_stdio(tmp_path))
        .replace(
            "open_ticket: {mcp: kb/create_ticket, risk: write, side_effect: true}",
            "open_ticket: {mcp: kb/create_ticket, risk: write, side_effect: true, "
            "requires_approval: true}\n  nap: {mcp: kb/slow, risk: read, side_effect: false, "
            "timeout_s: 0.5, max_attempts: 1}",
        )
        .replace(
            "tools: [kb_lookup, open_ticket, flaky, missing]",
            "tools: [kb_lookup, open_ticket, nap]",
        )
    )
    log = SqliteEventLog(tmp_path / "ledger.db")
    workflow = load_workflow(path)
    model = ScriptedModel(
        {
            "agent": [
                call_tool("kb_lookup", topic="tampered"),
                call_tool("nap", seconds=5),
                call_tool("kb_lookup", topic="refunds"),  # the session was reset: a new one
                call_tool("open_ticket", customer="ada", summary="refund"),
                reply("done"),
            ]
        }
    )
    runtime = make_runtime(workflow, model)
    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("help")
    state = await runner.run(task_id)
    assert state.pending_approvals and _lines(env) == 0  # waits for a person; nothing ran
    [approval] = state.pending_approvals
    grant = decision(state, approval.id, granted=True, by="ann", text=None)
    await log.append([grant.model_copy(update={"seq": state.last_seq + 1})])
    state = await runner.run(task_id)
    await runtime.aclose()
    events = await task_events(log, task_id)
    assert state.status == "completed"
    [flag] = [e for e in events if e.type == "injection_suspected"]
    assert flag.source.startswith("tool:kb_lookup")
    [failed] = [e for e in events if e.type == "tool_call_failed"]
    assert (failed.tool, failed.error_kind) == ("nap", "timeout")
    results = [e.result for e in events if e.type == "tool_call_completed"]
    assert "Refunds are accepted" in str(results[1])
    assert _lines(env) == 1  # the approved ticket, once
    await log.close()


async def test_a_resumed_task_keeps_its_pinned_tools_and_refuses_a_changed_one(
    tmp_path: Path, env: Path
):
    log = SqliteEventLog(tmp_path / "ledger.db")
    path = _write(tmp_path, _stdio(tmp_path))
    hang = asyncio.Event()

    async def stall(request):
        await hang.wait()  # the process "dies" before the model answers
        raise AssertionError("unreachable")

    workflow = load_workflow(path)
    runtime = make_runtime(workflow, ScriptedModel(stall))
    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("look it up")
    running = asyncio.create_task(runner.run(task_id))
    deadline = time.monotonic() + 30
    while not any(e.type == "agent_step_started" for e in await task_events(log, task_id)):
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.02)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await runtime.aclose()

    # the server was upgraded meanwhile: its lookup tool is described differently
    path.write_text(
        path.read_text().replace(
            "MCP_TEST_CRASH_MARK", "MCP_TEST_VARIANT: '2', MCP_TEST_CRASH_MARK"
        )
    )
    model = ScriptedModel({"agent": [call_tool("kb_lookup", topic="refunds"), reply("done")]})
    workflow = load_workflow(path)
    runtime = make_runtime(workflow, model)
    state = await EmbeddedRunner(log, runtime).run(task_id)
    await runtime.aclose()
    events = await task_events(log, task_id)
    assert state.status == "completed"
    assert [e.type for e in events].count("mcp_tools_pinned") == 1  # adopted, not re-pinned
    offered = {t.name: t.description for t in model.calls[0].tools}
    assert offered["kb_lookup"] == "Look up a knowledge-base article by topic"  # as pinned
    [failed] = [e for e in events if e.type == "tool_call_failed"]
    assert failed.error_kind == "mcp_tool_changed"
    assert "changed tool 'lookup' since this task pinned it" in failed.message
    await log.close()
