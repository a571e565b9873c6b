"""Event -> audit row: typed columns, statuses, the task's workflow, the masked payload."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from agentledger.audit.rows import (
    AUDIT_COLUMNS,
    CORRUPT_TYPE,
    AuditRow,
    corrupt_row,
    status_of,
    to_row,
    workflow_of,
)
from agentledger.schemas import (
    EVENT_TYPES,
    GoalSubmitted,
    LimitReached,
    LlmCallCompleted,
    LlmCallFailed,
    OutputRejected,
    TokenUsage,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    WorkflowRef,
)
from agentledger.schemas.codec import decode

SAMPLES = Path(__file__).parents[1] / "contract" / "samples"
WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def test_columns_are_the_row_fields_in_order() -> None:
    assert tuple(f.name for f in dataclasses.fields(AuditRow)) == AUDIT_COLUMNS
    row = to_row(GoalSubmitted(task_id="t", goal="g", workflow=WorkflowRef(name="wf")))
    assert dict(zip(AUDIT_COLUMNS, row.values(), strict=True)) == dataclasses.asdict(row)


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_catalogued_event_maps_to_a_row(sample: Path) -> None:
    event = decode(sample.read_bytes())
    row = to_row(event, workflow="wf")
    assert row.event_id == event.event_id
    assert row.task_id == event.task_id
    assert row.seq == event.seq
    assert row.type == event.type
    assert row.occurred_at == event.occurred_at
    assert row.occurred_at.tzinfo is not None
    assert orjson.loads(row.payload)["type"] == event.type


def test_samples_cover_the_catalog() -> None:
    assert {p.name.split(".")[0] for p in SAMPLES.glob("*.json")} == set(EVENT_TYPES)


def test_llm_call_completed_carries_model_tokens_cost_latency() -> None:
    event = LlmCallCompleted(
        task_id="t1",
        agent="researcher",
        subtask_id="s1",
        iteration=2,
        model="gpt-4o-mini",
        provider="openai",
        request_digest="d",
        content="write to ann@example.com",
        usage=TokenUsage(input_tokens=1200, output_tokens=300, cached_tokens=100),
        cost_usd=0.00123,
        latency_ms=842.5,
        occurred_at=WHEN.astimezone(timezone(timedelta(hours=2))),
        causation_id="c",
        correlation_id="t1",
    )
    row = to_row(event, workflow="research-brief")
    assert (row.model, row.provider, row.agent, row.subtask_id) == (
        "gpt-4o-mini",
        "openai",
        "researcher",
        "s1",
    )
    assert (row.input_tokens, row.output_tokens, row.cached_tokens) == (1200, 300, 100)
    assert (row.cost_usd, row.latency_ms, row.status) == (0.00123, 842.5, "ok")
    assert row.workflow == "research-brief"
    assert row.occurred_at == WHEN
    assert row.occurred_at.utcoffset() == timedelta(0)
    assert (row.causation_id, row.correlation_id, row.tool, row.error_kind) == ("c", "t1", "", "")
    payload = orjson.loads(row.payload)
    assert payload["content"] == "write to [email]"
    assert payload["usage"]["input_tokens"] == 1200


def test_failures_rejections_and_limits() -> None:
    common = {"task_id": "t", "agent": "a", "subtask_id": "s"}
    llm_failed = LlmCallFailed(
        **common,
        iteration=1,
        model="m",
        provider="p",
        error_kind="rate_limited",
        message="429",
        retryable=True,
        latency_ms=50.0,
    )
    tool_failed = ToolCallFailed(
        **common,
        call_id="c",
        tool="search",
        idempotency_key="k",
        error_kind="timeout",
        message="slow",
        latency_ms=3000.0,
    )
    rejected = ToolCallRejected(
        **common, iteration=1, call_id="c", tool="rm", reason="not allowed", error_kind="forbidden"
    )
    output = OutputRejected(**common, errors=["x"], raw_output="{}", will_retry=True)
    limit = LimitReached(
        task_id="t", limit="iterations", scope="agent", severity="warning", value=10, threshold=10
    )
    assert [status_of(e) for e in (llm_failed, tool_failed, rejected, output, limit)] == [
        "error",
        "error",
        "rejected",
        "rejected",
        "warning",
    ]
    rows = [to_row(e) for e in (llm_failed, tool_failed, rejected, output, limit)]
    assert [r.error_kind for r in rows] == [
        "rate_limited",
        "timeout",
        "forbidden",
        "output_rejected",
        "limit:iterations",
    ]
    assert (rows[0].model, rows[0].latency_ms, rows[0].cost_usd) == ("m", 50.0, 0.0)
    assert (rows[1].tool, rows[1].latency_ms) == ("search", 3000.0)
    assert rows[2].tool == "rm"


def test_tool_calls_carry_the_tool_and_mask_arguments_and_results() -> None:
    requested = ToolCallRequested(
        task_id="t",
        agent="a",
        subtask_id="s",
        iteration=1,
        call_id="c",
        tool="send_mail",
        arguments={"to": "bob@example.org", "api_key": "sk-abcdefghijklmnopqrstuv"},
        idempotency_key="t/c",
    )
    completed = ToolCallCompleted(
        task_id="t",
        agent="a",
        subtask_id="s",
        call_id="c",
        tool="send_mail",
        idempotency_key="t/c",
        result={"from_ip": "203.0.113.9", "card": "4111111111111111"},
        latency_ms=12.0,
    )
    req_row, done_row = to_row(requested), to_row(completed)
    assert (req_row.tool, req_row.status, req_row.latency_ms) == ("send_mail", "", 0.0)
    assert (done_row.tool, done_row.status, done_row.latency_ms) == ("send_mail", "ok", 12.0)
    assert orjson.loads(req_row.payload)["arguments"] == {"to": "[email]", "api_key": "[secret]"}
    assert orjson.loads(done_row.payload)["result"] == {"from_ip": "[ip]", "card": "[card]"}
    assert orjson.loads(req_row.payload)["idempotency_key"] == "t/c"


def test_the_goal_names_its_workflow() -> None:
    goal = GoalSubmitted(
        task_id="t", goal="call +44 20 7946 0958", workflow=WorkflowRef(name="triage")
    )
    assert workflow_of(goal) == "triage"
    row = to_row(goal, workflow="ignored")
    assert row.workflow == "triage"
    assert orjson.loads(row.payload)["goal"] == "call [phone]"
    limit = LimitReached(
        task_id="t", limit="tokens", scope="task", severity="stop", value=1, threshold=1
    )
    assert workflow_of(limit) is None
    assert to_row(limit).workflow == ""


def test_corrupt_record_row_takes_the_stored_time_or_the_fallback() -> None:
    data = b'{"type": "nope", "occurred_at": "2026-03-04T05:06:07.890123Z", "x": "a@b.io"}'
    row = corrupt_row(17, "t", 3, "unknown event type 'nope'", data, fallback=WHEN)
    assert (row.type, row.status, row.error_kind, row.seq) == (
        CORRUPT_TYPE,
        "corrupt",
        "corrupt_event",
        3,
    )
    assert row.event_id == "corrupt:t:17"
    assert row.occurred_at == WHEN
    later = WHEN + timedelta(days=1)
    assert corrupt_row(17, "t", None, "not JSON", b"\xff", fallback=later).occurred_at == later
    assert orjson.loads(row.payload) == {"offset": 17, "reason": "unknown event type 'nope'"}
