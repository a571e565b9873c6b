"""LLM call events. The full response is recorded so that replay never calls the model."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    model_serializer,
)

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


UsageSource: TypeAlias = Literal["reported", "estimated"]
"""Where token counts came from: the server's ``usage`` block, or counted locally."""

# Written only when they say something, so ordinary calls encode as they always did.
_QUIET_DEFAULTS: dict[str, object] = {"usage_source": "reported", "unpriced": False}


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
    usage_source: UsageSource = "reported"  # estimated: the server sent no usage
    unpriced: bool = False  # no price known for the model: cost_usd is 0, not the cost
    priced_as: str | None = None  # the model the price was looked up for, when not `model`

    @model_serializer(mode="wrap")
    def _omit_quiet_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        for name, default in _QUIET_DEFAULTS.items():
            if data.get(name) == default:
                data.pop(name, None)
        if data.get("priced_as") is None:
            data.pop("priced_as", None)
        return data


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
