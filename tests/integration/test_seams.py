"""Seams between features that were each tested alone: evaluation over MCP tasks, the
console over the newer events, masking across the read paths. Real components only (a
stdio MCP server built with the ``mcp`` SDK, the SQLite ledger, the scripted model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.agents.workflow import load_workflow
from agentledger.evaluation.verify import verify_events
from agentledger.llm import ScriptedModel
from agentledger.llm.scripted import call_tool, reply
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, task_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

MCP_WORKFLOW = """
name: seam-mcp
pattern: peer_to_peer
entry: agent
model: {{provider: scripted}}
mcp_servers:
  kb: {{command: [python, -m, tests.support.mcp_server, stdio], cwd: "{root}",
        env: {{MCP_TEST_LEDGER: "{tickets}", MCP_TEST_CRASH_MARK: "{crash}"}}}}
tools:
  kb_lookup: {{mcp: kb/lookup, risk: read, side_effect: false}}
  open_ticket: {{mcp: kb/create_ticket, risk: write, side_effect: true}}
agents:
  agent:
    tools: [kb_lookup, open_ticket]
"""


def _tickets(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_verify_offers_the_pinned_mcp_tools_and_never_calls_the_server(
    tmp_path: Path,
) -> None:
    # verify built the MCP tools without their pinned schemas (a placeholder spec), so every
    # task with MCP tools diverged at its first LLM request; and an answered MCP tool still
    # called the server, so verifying a task would open its ticket a second time.
    tickets = tmp_path / "tickets.log"
    path = tmp_path / "workflow.yaml"
    path.write_text(
        MCP_WORKFLOW.format(root=ROOT, tickets=tickets, crash=tmp_path / "crashed")
    )
    turns = [
        call_tool("kb_lookup", topic="refunds"),
        call_tool("open_ticket", customer="ada", summary="broken kettle"),
        reply("ticket opened"),
    ]
    log = SqliteEventLog(tmp_path / "ledger.db")
    try:
        runtime = make_runtime(load_workflow(path), ScriptedModel({"agent": turns}))
        try:
            runner = EmbeddedRunner(log, runtime)
            task_id = await runner.submit("open a ticket")
            state = await runner.run(task_id)
        finally:
            await runtime.aclose()
        assert state.status == "completed"
        assert _tickets(tickets) == 1
        events = await task_events(log, task_id)

        fresh = make_runtime(load_workflow(path), ScriptedModel({"agent": []}))
        try:
            result = await verify_events(events, fresh)
        finally:
            await fresh.aclose()
        assert result.ok, result.describe()
        assert result.events_checked >= len(events) - 2
        assert _tickets(tickets) == 1  # answered from the recording, not by the server
    finally:
        await log.close()
