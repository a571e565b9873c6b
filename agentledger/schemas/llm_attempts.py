"""What happened inside one LLM call before it completed or failed.

A call that needed retries, a lower structured-output mode or a fallback model records
each of those steps as a compact event, in the same batch as the ``llm_call_completed`` or
``llm_call_failed`` it led to (all caused by the same ``agent_step_started``), so the log
says why a call took four attempts and analytics can count recovered 429s and 500s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentledger.schemas.envelope import EventBase


class LlmAttemptFailed(EventBase):
    """One HTTP attempt failed and was retried (or given up for the fallback model)."""

    type: Literal["llm_attempt_failed"] = "llm_attempt_failed"
    subtask_id: str
    iteration: int
    model: str
    provider: str
    attempt: int = Field(ge=1)  # 1-based, across retries, step-downs and fallback
    error_kind: str  # rate_limited | server_error | timeout | connection | ...
    status_code: int | None = None
    retry_after_s: float | None = None  # what the server asked for (Retry-After)
    delay_s: float = 0.0  # the wait before the next attempt (0: the fallback went next)
    message: str = Field(default="", max_length=300)


class LlmOutputModeLowered(EventBase):
    """The server refused a structured-output mode; the call went on with a lower one."""

    type: Literal["llm_output_mode_lowered"] = "llm_output_mode_lowered"
    subtask_id: str
    iteration: int
    model: str
    provider: str
    attempt: int = Field(ge=1)
    from_mode: str  # json_schema | json_object
    to_mode: str  # json_object | prompt
    reason: str = Field(default="", max_length=300)


class LlmFallbackUsed(EventBase):
    """The primary model gave up; the call went on with the fallback model."""

    type: Literal["llm_fallback_used"] = "llm_fallback_used"
    subtask_id: str
    iteration: int
    provider: str
    from_model: str
    to_model: str
    error_kind: str  # why the primary gave up
    reason: str = Field(default="", max_length=300)
