"""LLM call events. The full response is recorded so that replay never calls the model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.schemas.envelope import EventBase


class RecordedToolCall(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str
    tool: str
    arguments: dict[str, JsonValue] | None = None
    raw_arguments: str | None = None  # kept when the model's arguments were not valid JSON


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class LlmCallCompleted(EventBase):
    type: Literal["llm_call_completed"] = "llm_call_completed"
    subtask_id: str
    iteration: int
    model: str
    provider: str
    request_digest: str
    content: str | None = None
    tool_calls: list[RecordedToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 1
    fallback_from: str | None = None  # the primary model, when a fallback model answered
    raw_response: dict[str, JsonValue] | None = None


class LlmCallFailed(EventBase):
    type: Literal["llm_call_failed"] = "llm_call_failed"
    subtask_id: str
    iteration: int
    model: str
    provider: str
    error_kind: str
    message: str
    retryable: bool
    attempts: int = 1
    latency_ms: float = 0.0
