"""Pure checks: memory namespaces per agent, and how workflows declare memory and MCP."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agentledger.agents.workflow import load_workflow
from agentledger.errors import WorkflowError
from agentledger.memory.access import MemorySpec, admit, resolve
from agentledger.memory.embedders import HashingEmbedder
from agentledger.memory.store import Erase, MemoryStore, Upsert
from agentledger.projections.task_state import TaskState
from agentledger.schemas import WorkflowRef

STATE = TaskState(task_id="t", workflow=WorkflowRef(name="support"), inputs={"user": "alice"})


def test_namespaces_are_filled_from_the_task_and_unknown_ones_stand_for_nothing():
    assert resolve(("kb/{workflow}", "user/{user}", "s/{session}"), STATE) == [
        "kb/support",
        "user/alice",
    ]


def test_admission_fills_the_default_caps_top_k_and_refuses_other_namespaces():
    spec = MemorySpec(read=("kb", "user/{user}"), write=("user/{user}",), top_k=3)
    args, refusal = admit(spec, STATE, "memory_search", {"query": "q", "top_k": 50})
    assert refusal is None and args == {"query": "q", "namespace": "kb", "top_k": 3}
    _, refusal = admit(spec, STATE, "memory_write", {"key": "k", "text": "t", "namespace": "kb"})
    assert refusal is not None and "outside what this agent may write" in refusal
    _, refusal = admit(None, STATE, "memory_search", {"query": "q"})
    assert refusal is not None and "declares no memory" in refusal
    assert admit(None, STATE, "other_tool", {"x": 1}) == ({"x": 1}, None)


def test_the_hashing_embedder_is_deterministic_and_normalised():
    e = HashingEmbedder(64)
    a, b = e.vector("refunds within 30 days"), e.vector("refunds within 30 days")
    assert a == b and abs(sum(x * x for x in a) - 1.0) < 1e-9
    assert e.vector("refund") != e.vector("shipping")


BASE = """
name: w
pattern: peer_to_peer
entry: a
model: {provider: scripted}
"""


def _load(tmp_path: Path, body: str):
    path = tmp_path / "w.yaml"
    path.write_text(BASE + body)
    return load_workflow(path)


def test_an_mcp_tool_must_declare_risk_and_side_effect_and_name_a_declared_server(
    tmp_path: Path,
):
    with pytest.raises(WorkflowError) as info:
        _load(
            tmp_path,
            """
mcp_servers: {kb: {command: [python, server.py]}}
tools:
  t1: {mcp: kb/lookup}
  t2: {mcp: nope/lookup, risk: read, side_effect: false}
  t3: {mcp: kb, risk: read, side_effect: false}
agents: {a: {tools: [t1, t2, t3]}}
""",
        )
    text = str(info.value)
    assert "declare `risk` and `side_effect`" in text
    assert "MCP server 'nope' is not declared" in text
    assert "mcp must look like server/tool" in text


def test_a_server_needs_exactly_one_transport(tmp_path: Path):
    with pytest.raises(WorkflowError, match="exactly one of `command`"):
        _load(tmp_path, "mcp_servers: {kb: {command: [x], url: 'http://h/mcp'}}\nagents: {a: {}}")


def test_memory_grants_its_tools_and_checks_namespace_variables(tmp_path: Path):
    wf = _load(tmp_path, "agents: {a: {memory: {read: [kb], write: ['user/{user}']}}}")
    assert wf.agents["a"].tools == ("memory_search", "memory_episodes", "memory_write")
    assert wf.uses_memory
    with pytest.raises(WorkflowError, match=r"names \['tenant'\]"):
        _load(tmp_path, "agents: {a: {memory: {read: ['t/{tenant}']}}}")


def test_index_changes_commute_so_any_delivery_order_gives_the_same_index(tmp_path: Path):
    """Kafka partitions interleave and re-deliver: writes and erasures applied in any order,
    some twice, leave the same memories as the log order does."""
    rng = random.Random(3)
    changes: list[Upsert | Erase] = []
    for n in range(60):
        at = f"2026-11-01T12:00:{n:02d}.000000+00:00"
        key = f"k{rng.randrange(8)}"
        if n % 7 == 6:
            changes.append(Erase("ns", key if n % 2 else None, at))
        else:
            changes.append(
                Upsert("ns", key, f"text {n}", {}, {}, "t", f"e{n:03d}", at, [1.0, float(n)])
            )

    def index(order: list[Upsert | Erase], name: str) -> list[tuple[str, str]]:
        store = MemoryStore(tmp_path / f"{name}.db", identity="test", dimensions=2)
        for change in order:
            store.apply([change], expected=store.position(), position=store.position() + 1)
        items = [(i.key, i.text) for i in store.items()]
        store.close()
        return items

    expected = index(changes, "log-order")
    assert expected  # some memories survive the erasures
    for attempt in range(5):
        shuffled = changes + rng.sample(changes, 10)  # re-deliveries
        rng.shuffle(shuffled)
        assert index(shuffled, f"shuffled-{attempt}") == expected
