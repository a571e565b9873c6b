"""examples/support_memory end to end: the workflow file as users load it, its MCP server
(kb_server.py) as a real stdio subprocess, long-term memory in sqlite-vec beside a SQLite
ledger, and the example's offline model."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.cli import main
from agentledger.settings import Settings
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import task_events

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_memory"


async def test_support_answers_from_the_kb_then_from_memory_and_escalates(tmp_path: Path):
    settings = Settings(home=tmp_path)
    workflow = load_workflow(EXAMPLE / "workflow.yaml", settings=settings)
    log = SqliteEventLog(settings.ledger_path)
    runtime = build_runtime(workflow, settings, memory_log=log)
    runner = EmbeddedRunner(log, runtime)

    async def ask(goal: str, user: str) -> tuple[object, list[str], list]:
        task_id = await runner.submit(goal, inputs={"user": user})
        state = await runner.run(task_id)
        events = await task_events(log, task_id)
        calls = [e.tool for e in events if e.type == "tool_call_requested"]
        return state, calls, events

    try:
        first, calls, events = await ask("How do I get a refund for my kettle?", "alice")
        assert first.status == "completed"
        assert "30 days" in workflow.present(first.result)
        # memory had nothing: the KB answered over MCP, and the answer was remembered
        assert calls == ["memory_search", "kb_lookup", "memory_write", "memory_write"]
        assert [e.namespace for e in events if e.type == "memory_written"] == [
            "kb/support",
            "customer/alice",
        ]

        second, calls, _ = await ask("Can I return this and get my money back?", "bob")
        assert second.status == "completed"
        assert "30 days" in workflow.present(second.result)
        assert calls == ["memory_search", "memory_write"]  # from memory: no KB call

        third, calls, events = await ask("URGENT: my invoice shows the wrong address", "carol")
        assert third.status == "completed"
        assert calls[-1] == "open_ticket"
        assert third.result["ticket"].startswith("SUP-")
        assert [e.type for e in events].count("mcp_tools_pinned") == 1

        assert runtime.memory is not None
        assert await runtime.memory.episodes(first.task_id, "workflow", 5) == []  # no later ones
        past = await runtime.memory.episodes(third.task_id, "workflow", 5)
        assert [p["user"] for p in past] == ["bob", "alice"]
    finally:
        await runtime.aclose()
        await log.close()


def test_the_example_runs_from_the_cli_and_its_memory_is_searchable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path / "home"))
    db = ["--db", str(tmp_path / "elsewhere.db")]  # memory follows the ledger it is given

    def cli(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*db, *argv], out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    code, text = cli(
        "run",
        str(EXAMPLE / "workflow.yaml"),
        "--goal",
        "Where is my parcel? Shipping is slow",
        "--input",
        "user=dana",
        "--quiet",
    )
    assert code == 0, text
    assert "3-5 working days" in text
    code, text = cli(
        "memory",
        "search",
        "kb/support",
        "shipping",
        "--json",
        "--workflow",
        str(EXAMPLE / "workflow.yaml"),
    )
    assert code == 0, text
    [hit] = orjson.loads(text)[:1]
    assert hit["key"] == "shipping" and hit["metadata"] == {"from": "kb"}
