"""Guard-rail events: circuit breakers, tool retries with backoff, context compaction."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from agentledger.schemas.envelope import EventBase
from agentledger.schemas.llm import TokenUsage

CircuitState = Literal["closed", "open", "half_open"]


class CircuitStateChanged(EventBase):
    """A circuit breaker (per agent's model or per tool, per process) changed state.

    Recorded in the task whose call caused the change: a failure that opened it, the call
    admitted as the half-open trial, the trial's success (closed) or failure (re-opened).
    """

    type: Literal["circuit_state_changed"] = "circuit_state_changed"
    scope: Literal["agent", "tool"]
    name: str  # the agent or the tool
    from_state: CircuitState
    to_state: CircuitState
    consecutive_failures: int
    threshold: int
    cooldown_s: float
    reopens_at: AwareDatetime | None = None  # when an open breaker lets a trial call through
    subtask_id: str | None = None


class ToolCallRetryScheduled(EventBase):
    """Attempt ``attempt`` of a tool call failed transiently; the next runs after ``delay_s``.

    The delay is in the event: after a crash the retry waits out what is left of it instead
    of starting over.
    """

    type: Literal["tool_call_retry_scheduled"] = "tool_call_retry_scheduled"
    subtask_id: str
    call_id: str
    tool: str
    idempotency_key: str
    attempt: int = Field(ge=1)  # the attempt that failed
    max_attempts: int = Field(ge=2)
    delay_s: float = Field(ge=0)  # chosen with full jitter from [0, min(max, base * 2^(attempt-1))]
    error_kind: str
    error: str


class ContextSummarized(EventBase):
    """An agent's older turns were compacted into a summary before its next LLM call.

    ``method`` is ``model`` (the agent's own model wrote the summary; its ``usage`` and
    ``cost_usd`` count in the task budget like any LLM call) or ``extractive`` (a
    deterministic digest, used when the model call failed: ``fallback_reason``).
    """

    type: Literal["context_summarized"] = "context_summarized"
    subtask_id: str
    iteration: int
    tokens_before: int
    tokens_after: int
    threshold: int
    turns_compacted: int
    method: Literal["model", "extractive"]
    summary: str
    model: str | None = None
    provider: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    fallback_reason: str | None = None
