"""The span projector alone: pure, deterministic, content off unless asked and masked then."""

from __future__ import annotations

import sys
from pathlib import Path

from agentledger.agents.workflow import load_workflow
from agentledger.llm import ScriptedModel
from agentledger.otel.spans import SpanProjector, spans_of, trace_id_of
from agentledger.schemas import LlmCallCompleted, ToolCallRequested
from agentledger.testing import run_goal

FIXTURES = Path(__file__).parent.parent / "fixtures" / "console"
sys.path.insert(0, str(FIXTURES))
from console_model import respond  # noqa: E402


async def test_the_same_log_gives_the_same_spans_and_a_trace_per_task() -> None:
    result = await run_goal(load_workflow(FIXTURES / "workflow.yaml"), ScriptedModel(respond), "x")
    first, second = spans_of(result.events), spans_of(result.events)
    assert first == second
    assert {s.trace_id for s in first} == {trace_id_of(result.task_id)}
    assert len({s.span_id for s in first}) == len(first) == 9
    by_id = {s.span_id: s for s in first}
    for span in first:  # every parent is a span of the same export, and encloses its child
        if span.parent_span_id is not None:
            parent = by_id[span.parent_span_id]
            assert parent.start <= span.start and span.end <= parent.end
    assert [s.name for s in first if s.parent_span_id is None] == ["invoke_workflow console-demo"]
    root = next(s for s in first if s.parent_span_id is None)
    assert root.attributes["gen_ai.usage.input_tokens"] == result.state.tokens_in
    assert root.attributes["agentledger.cost_usd"] == result.state.cost_usd


async def test_content_only_when_asked_and_masked_even_from_a_raw_log() -> None:
    result = await run_goal(load_workflow(FIXTURES / "workflow.yaml"), ScriptedModel(respond), "x")
    # a log kept raw (primary_log: raw) still holds the address: the projector masks it
    events = [
        e.model_copy(update={"content": "42 rows; contact ops@example.com"})
        if isinstance(e, LlmCallCompleted) and e.content and e.content.startswith("42 rows")
        else e
        for e in result.events
    ]
    assert any("ops@example.com" in str(e) for e in events)
    plain = spans_of(events)
    assert not any(k.startswith("gen_ai.output") for s in plain for k in s.attributes)
    assert not any(k.startswith("gen_ai.tool.call.arg") for s in plain for k in s.attributes)
    rich = spans_of(events, content=True)
    text = " ".join(str(s.attributes) for s in rich)
    assert "42 rows; contact" in text
    assert "ops@example.com" not in text


async def test_a_tool_result_without_its_request_gives_no_span() -> None:
    result = await run_goal(load_workflow(FIXTURES / "workflow.yaml"), ScriptedModel(respond), "x")
    cut = [e for e in result.events if not isinstance(e, ToolCallRequested)]
    projector = SpanProjector()
    spans = [s for e in cut for s in projector.take(e)]
    assert not [s for s in spans if s.name.startswith("execute_tool")]
    assert len(spans) == 8
