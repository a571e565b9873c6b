"""Guard-rail events: a limit was approached (warning) or hit (stop)."""

from __future__ import annotations

from typing import Literal

from agentledger.schemas.envelope import EventBase


class LimitReached(EventBase):
    type: Literal["limit_reached"] = "limit_reached"
    limit: str  # iterations | tokens | cost_usd | wall_time_s | ...
    scope: str  # agent | task | tool
    severity: Literal["warning", "stop"]
    value: float
    threshold: float
    subtask_id: str | None = None
    detail: str = ""
