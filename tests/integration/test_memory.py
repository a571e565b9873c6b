"""Long-term memory end to end: the real sqlite-vec index over a real SQLite ledger, driven
by the embedded runner with a scripted model."""

# ruff: noqa: F811
# (pytest fixtures are imported by name and requested by the same name)

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import orjson
import pytest

from agentledger.agents.context import Runtime
from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.audit.erasure import ERASED
from agentledger.audit.projection import AuditProjection
from agentledger.cli import main
from agentledger.llm import ScriptedModel
from agentledger.llm.pricing import PriceTable
from agentledger.llm.scripted import call_tool, reply
from agentledger.memory import EmbedderSettings, HashingEmbedder, MemoryService, MemorySpec
from agentledger.memory.embedders import EmbeddingError
from agentledger.schemas.memory import MemoryErased, MemoryWritten
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.log import Recorded
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import task_events
from tests.support.audit import (  # fixtures are imported to be found by pytest
    audit_chdb_dir,  # noqa: F401
    audit_database,  # noqa: F401
    audit_store,  # noqa: F401
    audit_url,  # noqa: F401
)
from tests.support.openai_server import OpenAIStubServer

pytestmark = pytest.mark.integration


def _workflow(read: tuple[str, ...], write: tuple[str, ...]) -> Workflow:
    return Workflow.build(
        name="support",
        pattern="peer_to_peer",
        entry="agent",
        agents=[AgentSpec("agent", memory=MemorySpec(read=read, write=write, top_k=3))],
    )


async def _run(log, memory, workflow, turns, *, inputs=None):
    model = ScriptedModel({"agent": turns})
    runtime = Runtime(
        workflow=workflow,
        models={"agent": model},
        prices=PriceTable(),
        sandbox=Path("/tmp"),
        memory=memory,
    )
    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("help the customer", inputs=inputs or {})
    state = await runner.run(task_id)
    model.assert_complete()
    return state, await task_events(log, task_id)


@pytest.fixture
async def ledger(tmp_path: Path):
    log = SqliteEventLog(tmp_path / "ledger.db")
    memory = MemoryService.open(log, tmp_path / "memory.db", HashingEmbedder(128))
    yield log, memory
    if memory.store.is_open:
        memory.close()
    await log.close()


FACTS = {
    "refunds": "Refunds are accepted within 30 days of delivery with the receipt.",
    "shipping": "Standard shipping takes five working days within the country.",
    "warranty": "The warranty covers manufacturing defects for two years.",
}


async def _write_facts(log, memory, workflow):
    turns = [call_tool("memory_write", key=k, text=t) for k, t in FACTS.items()]
    return await _run(log, memory, workflow, [*turns, reply("stored")])


async def test_a_write_in_one_task_is_read_in_another(ledger):
    log, memory = ledger
    workflow = _workflow(read=("kb",), write=("kb",))
    state, events = await _write_facts(log, memory, workflow)
    assert state.status == "completed"
    written = [e for e in events if isinstance(e, MemoryWritten)]
    assert [(w.namespace, w.key) for w in written] == [("kb", k) for k in FACTS]
    assert written[0].source.idempotency_key  # provenance: the call that wrote it

    seen = {}

    def search(request):
        seen["result"] = request.messages[-1].content
        return reply("found")

    state, events = await _run(
        log,
        memory,
        workflow,
        [call_tool("memory_search", query="how long do refunds take"), search],
    )
    assert state.status == "completed"
    [done] = [e for e in events if e.type == "tool_call_completed"]
    memories = done.result["memories"]
    assert memories[0]["key"] == "refunds"
    assert len(memories) == 3  # the agent's top_k, whatever the model asked for
    assert "30 days" in seen["result"]  # what the model was shown, inside <data> tags


async def test_rebuild_gives_the_same_results_as_incremental_updates(ledger):
    log, memory = ledger
    workflow = _workflow(read=("kb",), write=("kb",))
    await _write_facts(log, memory, workflow)
    await _run(
        log,
        memory,
        workflow,
        [
            call_tool("memory_write", key="shipping", text="Express shipping takes one day."),
            reply("updated"),
        ],
    )
    await memory.forget("kb", "warranty", reason="test")
    queries = ["refund receipt", "shipping days", "warranty defects"]
    before = [await memory.search("kb", q, 5) for q in queries]
    position = await memory.projection.catch_up()
    assert await memory.rebuild() == position
    after = [await memory.search("kb", q, 5) for q in queries]
    assert before == after
    assert {m["key"] for m in after[1]} == {"refunds", "shipping"}
    assert after[1][0]["text"] == "Express shipping takes one day."


async def test_erasure_removes_a_key_then_a_namespace(ledger):
    log, memory = ledger
    workflow = _workflow(read=("kb",), write=("kb",))
    await _write_facts(log, memory, workflow)
    erased = await memory.forget("kb", "refunds", reason="customer asked", requested_by="ops")
    assert isinstance(erased, MemoryErased)
    keys = {m.key for m in await memory.items("kb")}
    assert keys == {"shipping", "warranty"}
    assert all(m["key"] != "refunds" for m in await memory.search("kb", "refunds", 5))
    await memory.forget("kb")
    assert await memory.items("kb") == []
    stored = [e.event.type for e in await log.read_from(0) if isinstance(e, Recorded)]
    assert stored.count("memory_erased") == 2  # erasure is an event in the log


async def test_a_namespace_outside_the_allow_list_is_refused(ledger):
    log, memory = ledger
    workflow = _workflow(read=("kb", "user/{user}"), write=("user/{user}",))
    _state, events = await _run(
        log,
        memory,
        workflow,
        [
            call_tool("memory_write", key="k", text="secret plan", namespace="kb"),
            call_tool("memory_search", query="plans", namespace="user/bob"),
            call_tool("memory_write", key="pref", text="prefers email"),
            reply("done"),
        ],
        inputs={"user": "alice"},
    )
    refused = [e for e in events if e.type == "tool_call_rejected"]
    assert [r.error_kind for r in refused] == ["namespace_not_allowed"] * 2
    assert "'kb' is outside what this agent may write" in refused[0].reason
    assert "'user/bob'" in refused[1].reason
    [written] = [e for e in events if isinstance(e, MemoryWritten)]
    assert written.namespace == "user/alice"  # the default: the first it may write
    assert {m.namespace for m in await memory.items()} == {"user/alice"}


async def test_episodes_are_past_tasks_of_the_same_user(ledger):
    log, memory = ledger
    workflow = _workflow(read=("kb",), write=())
    await _run(log, memory, workflow, [reply("first answer")], inputs={"user": "alice"})
    await _run(log, memory, workflow, [reply("bob's answer")], inputs={"user": "bob"})
    _state, events = await _run(
        log,
        memory,
        workflow,
        [call_tool("memory_episodes", scope="user"), reply("done")],
        inputs={"user": "alice"},
    )
    [done] = [e for e in events if e.type == "tool_call_completed"]
    episodes = done.result["episodes"]
    assert [(e["user"], e["status"], e["outcome"]) for e in episodes] == [
        ("alice", "completed", "first answer")
    ]


async def test_erasure_masks_the_value_in_the_audit_copy(ledger, audit_store):
    log, memory = ledger
    workflow = _workflow(read=("kb",), write=("kb",))
    await _write_facts(log, memory, workflow)
    await _run(log, memory, workflow, [call_tool("memory_search", query="refunds"), reply("x")])
    projection = AuditProjection(log, audit_store)
    await projection.catch_up()

    def holding(text: str) -> list[str]:
        rows = audit_store.query(
            f"SELECT type, payload FROM {audit_store.database}.audit_events"
        ).rows
        return sorted(str(t) for t, payload in rows if text in str(payload))

    refund = FACTS["refunds"]
    # the write, the model's call and its request, and the search result that returned it
    assert set(holding(refund)) == {
        "memory_written",
        "llm_call_completed",
        "tool_call_requested",
        "tool_call_completed",
    }
    await memory.forget("kb", "refunds", reason="GDPR request")
    await projection.catch_up()
    assert holding(refund) == []
    assert "memory_written" in holding(ERASED)
    assert "memory_written" in holding(FACTS["shipping"])  # other keys are kept
    await projection.rebuild()  # replaying the log masks again what it re-inserts
    assert holding(refund) == []


async def test_the_memory_cli_lists_searches_forgets_and_rebuilds(ledger, tmp_path: Path):
    log, memory = ledger
    await _write_facts(log, memory, _workflow(read=("kb",), write=("kb",)))
    memory.close()  # the CLI opens the index itself, as another process would
    base = ["--db", str(tmp_path / "ledger.db")]
    index = ["--index", str(tmp_path / "memory.db")]

    def cli(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main([*base, "memory", *argv, *index], out=out, err=err)
        return code, out.getvalue() + err.getvalue()

    # the CLI's default embedder is hashing:256; this index was built with hashing:128
    code, text = await asyncio.to_thread(cli, "list")
    assert code == 2 and "agentledger memory rebuild" in text
    code, text = await asyncio.to_thread(cli, "rebuild")
    assert code == 0 and "3 memories in 1 namespaces" in text
    code, text = await asyncio.to_thread(cli, "search", "kb", "refund receipt", "--json")
    assert code == 0 and orjson.loads(text)[0]["key"] == "refunds"
    code, text = await asyncio.to_thread(cli, "forget", "kb", "refunds", "--reason", "asked")
    assert code == 0 and "forgot key 'refunds'" in text
    code, text = await asyncio.to_thread(cli, "list", "kb", "--json")
    assert {m["key"] for m in orjson.loads(text)} == {"shipping", "warranty"}
    code, text = await asyncio.to_thread(cli, "episodes", "--json")
    assert code == 0 and orjson.loads(text)[0]["workflow"] == "support"


async def test_embeddings_from_an_openai_compatible_endpoint(tmp_path: Path):
    async with OpenAIStubServer(embedding_dimensions=48) as server:
        embedder = EmbedderSettings(
            provider="openai",
            model="text-embedding-3-small",
            dimensions=48,
            base_url=server.base_url,
            api_key_env=None,
        ).build()
        log = SqliteEventLog(tmp_path / "ledger.db")
        memory = MemoryService.open(log, tmp_path / "memory.db", embedder)
        await _write_facts(log, memory, _workflow(read=("kb",), write=("kb",)))
        hits = await memory.search("kb", "warranty for manufacturing defects", 2)
        assert hits[0]["key"] == "warranty"
        embedded = [r.body["input"] for r in server.requests if r.path == "/v1/embeddings"]
        assert embedded[-1] == ["warranty for manufacturing defects"]
        assert sorted(embedded[0]) == sorted(FACTS.values())  # one batch for the writes

        wrong = EmbedderSettings(
            provider="openai", dimensions=64, base_url=server.base_url, api_key_env=None
        ).build()
        with pytest.raises(EmbeddingError, match="expected 1 of 64"):
            await wrong.embed(["x"])
        await wrong.aclose()  # type: ignore[attr-defined]
        await memory.aclose()
        await log.close()
    down = EmbedderSettings(provider="openai", base_url=server.base_url, api_key_env=None).build()
    with pytest.raises(EmbeddingError, match="embeddings endpoint failed"):
        await down.embed(["x"])
    await down.aclose()  # type: ignore[attr-defined]
