"""Tool call events: request, refusal, the durable start marker, and the outcome."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from agentledger.schemas.envelope import EventBase


class ToolCallRequested(EventBase):
    type: Literal["tool_call_requested"] = "tool_call_requested"
    subtask_id: str
    iteration: int
    call_id: str
    tool: str
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    idempotency_key: str


class ToolCallRejected(EventBase):
    """Refused before execution: unknown tool, not allowed for this agent, bad arguments."""

    type: Literal["tool_call_rejected"] = "tool_call_rejected"
    subtask_id: str
    iteration: int
    call_id: str
    tool: str
    reason: str
    error_kind: str


class ToolCallStarted(EventBase):
    """Written before a side-effecting tool runs, so a crash mid-call is known afterwards."""

    type: Literal["tool_call_started"] = "tool_call_started"
    subtask_id: str
    call_id: str
    tool: str
    idempotency_key: str


class ToolCallCompleted(EventBase):
    type: Literal["tool_call_completed"] = "tool_call_completed"
    subtask_id: str
    call_id: str
    tool: str
    idempotency_key: str
    result: JsonValue
    latency_ms: float = 0.0
    replayed: bool = False  # True when the idempotency ledger answered without executing


class ToolCallFailed(EventBase):
    type: Literal["tool_call_failed"] = "tool_call_failed"
    subtask_id: str
    call_id: str
    tool: str
    idempotency_key: str
    error_kind: str
    message: str
    latency_ms: float = 0.0
