"""The model seam: what an agent step sends to a model and what comes back.

A model is anything with ``async def complete(request) -> ModelResponse``. The runtime
records the response in an ``LlmCallCompleted`` event, so a replay never calls it again.
Implementations: ``ScriptedModel`` (offline, deterministic) and ``OpenAIChatModel``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.schemas.llm import RecordedToolCall, TokenUsage, UsageSource


class Message(BaseModel):
    """One chat message. ``tool_calls`` on assistant turns, ``tool_call_id`` on tool turns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[RecordedToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(BaseModel):
    """A tool as the model sees it: name, description, JSON Schema of its arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    parameters: dict[str, JsonValue]


class ModelSettings(BaseModel):
    """Per-agent model configuration, resolved from the workflow file and settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str = "scripted"  # scripted | openai | azure
    model: str = "scripted"
    temperature: float | None = None
    max_output_tokens: int | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    base_url: str | None = None
    api_key_env: str | None = None  # the NAME of the variable holding the key, never the key
    api_key_file: str | None = None  # or a file holding it (e.g. a mounted secret)
    api_version: str | None = None  # Azure OpenAI
    fallback_model: str | None = None
    script: str | None = None  # scripted provider: "module:function" answering requests


class ModelRequest(BaseModel):
    """Everything a model needs for one agent step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    subtask_id: str
    agent: str
    iteration: int
    model: str
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    output_schema: dict[str, JsonValue] | None = None
    output_schema_name: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    purpose: Literal["step", "summary"] = "step"  # summary: compacting the agent's context

    def digest(self) -> str:
        """A stable digest of what was asked, recorded in LlmCallCompleted."""
        body = self.model_dump(mode="json", exclude={"task_id"})
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class AttemptNote(BaseModel):
    """One step inside a model call that did not end it: a failed attempt that was retried
    (``failed``), a structured-output mode the server refused (``step_down``), or the switch
    to the fallback model (``fallback``). The runtime records each as an event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["failed", "step_down", "fallback"]
    model: str
    attempt: int
    error_kind: str = ""
    status_code: int | None = None
    retry_after_s: float | None = None
    delay_s: float = 0.0
    detail: str = ""  # the server's words or the reason, short
    from_mode: str = ""  # step_down
    to_mode: str = ""  # step_down
    to_model: str = ""  # fallback


class ModelResponse(BaseModel):
    """What came back: text and/or tool calls, usage, and the raw body for the record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str | None = None
    tool_calls: list[RecordedToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    model: str
    usage: TokenUsage = Field(default_factory=TokenUsage)
    attempts: int = 1
    used_fallback: bool = False
    raw: dict[str, JsonValue] | None = None
    usage_source: UsageSource = "reported"
    # The model the server says answered (on Azure: the model, not the deployment name).
    reported_model: str | None = None
    trail: list[AttemptNote] = Field(default_factory=list)


@runtime_checkable
class ChatModel(Protocol):
    """Any model agentledger can call."""

    provider: str

    async def complete(self, request: ModelRequest) -> ModelResponse: ...


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
