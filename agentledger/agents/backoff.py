"""Retries of transient tool failures: exponential backoff with full jitter.

A failure is transient when the tool says so (``TransientToolError`` or
``ToolError(..., retryable=True)``) or when the tool timed out. Tools with side effects are
retried only when they declare ``safe_to_retry``: a failed attempt may have done part of
its work. The delay before attempt ``n + 1`` is drawn uniformly from
``[0, min(backoff_max_s, backoff_base_s * 2 ** (n - 1))]`` ("full jitter", so clients
that failed together do not retry together) and recorded in the
``tool_call_retry_scheduled`` event.
"""

from __future__ import annotations

import random
from datetime import datetime

from agentledger.errors import ToolError
from agentledger.schemas import utc_now
from agentledger.tools.registry import Tool


def is_transient(exc: ToolError) -> bool:
    return exc.retryable or exc.kind == "timeout"


def may_retry(tool: Tool, exc: ToolError, attempt: int) -> bool:
    """Whether attempt ``attempt`` that failed with ``exc`` gets another try."""
    if attempt >= tool.max_attempts or not is_transient(exc):
        return False
    return not tool.side_effect or tool.safe_to_retry


def backoff_cap(tool: Tool, attempt: int) -> float:
    """The largest delay after failed attempt ``attempt`` (1-based)."""
    return min(tool.backoff_max_s, tool.backoff_base_s * 2.0 ** (attempt - 1))


def backoff_delay(tool: Tool, attempt: int, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, cap]."""
    return (rng or random).uniform(0.0, backoff_cap(tool, attempt))


def remaining_delay(scheduled_at: datetime, delay_s: float) -> float:
    """What is left of a delay scheduled at ``scheduled_at`` (0 when it has passed)."""
    return max(0.0, delay_s - (utc_now() - scheduled_at).total_seconds())
