"""Circuit breakers per agent (its model calls) and per tool: stop calling what keeps failing.

A breaker is ``closed`` until ``failure_threshold`` consecutive failures open it. While
``open`` every call is refused at once. After ``cooldown_s`` the next call is let through
as a trial (``half_open``): its success closes the breaker, its failure opens it again for
another cool-down. Other calls are refused while the trial runs.

A breaker protects a downstream service across tasks, so its state lives in the process
(``Runtime.breakers``), not in a task's log: in the distributed shape each worker has its
own breakers, and a restarted process starts with all of them closed. Every transition is
recorded as a ``circuit_state_changed`` event in the task whose call caused it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from agentledger.schemas import EventBase
from agentledger.schemas.guards import CircuitState, CircuitStateChanged
from agentledger.tools.registry import BreakerSettings

Scope = Literal["agent", "tool"]
Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``); injectable so tests need not sleep."""


@dataclass(frozen=True)
class Admission:
    """Whether a call may go ahead; ``events`` records a transition the admission caused."""

    allowed: bool
    events: list[EventBase]
    reason: str = ""


@dataclass
class CircuitBreaker:
    scope: Scope
    name: str
    clock: Clock
    state: CircuitState = "closed"
    consecutive_failures: int = 0
    opened_at: float = 0.0
    trial_started_at: float | None = None

    def admit(self, cause: EventBase, settings: BreakerSettings) -> Admission:
        """Let a call through, or refuse it while the breaker is open or its trial runs."""
        now = self.clock()
        if self.state == "open":
            if now < self.opened_at + settings.cooldown_s:
                return Admission(False, [], self._refusal(settings))
            events = [self._move(cause, settings, "half_open")]
            self.trial_started_at = now
            return Admission(True, events)
        if self.state == "half_open":
            # A trial that never reported (its task was cancelled) expires after a cool-down.
            if (
                self.trial_started_at is not None
                and now < self.trial_started_at + settings.cooldown_s
            ):
                return Admission(False, [], self._refusal(settings))
            self.trial_started_at = now
        return Admission(True, [])

    def record(self, cause: EventBase, settings: BreakerSettings, *, ok: bool) -> list[EventBase]:
        """Count a call's outcome; the transition it causes, if any, as an event."""
        if self.state == "open":
            return []  # a call admitted before the breaker opened: it changes nothing now
        if ok:
            self.consecutive_failures = 0
            if self.state == "half_open":
                self.trial_started_at = None
                return [self._move(cause, settings, "closed")]
            return []
        self.consecutive_failures += 1
        if self.state == "half_open" or self.consecutive_failures >= settings.failure_threshold:
            self.opened_at = self.clock()
            self.trial_started_at = None
            return [self._move(cause, settings, "open")]
        return []

    def _reopens_at(self, settings: BreakerSettings) -> datetime:
        return datetime.fromtimestamp(self.opened_at + settings.cooldown_s, UTC)

    def _refusal(self, settings: BreakerSettings) -> str:
        what = (
            f"the model of agent {self.name!r}" if self.scope == "agent" else f"tool {self.name!r}"
        )
        if self.state == "half_open":
            return f"circuit breaker for {what} is half-open and its trial call is still running"
        return (
            f"circuit breaker for {what} is open after {self.consecutive_failures} consecutive "
            f"failures; the next trial call is allowed at "
            f"{self._reopens_at(settings).isoformat(timespec='seconds')}"
        )

    def _move(self, cause: EventBase, settings: BreakerSettings, to: CircuitState) -> EventBase:
        before, self.state = self.state, to
        return CircuitStateChanged.caused_by(
            cause,
            scope=self.scope,
            name=self.name,
            from_state=before,
            to_state=to,
            consecutive_failures=self.consecutive_failures,
            threshold=settings.failure_threshold,
            cooldown_s=settings.cooldown_s,
            reopens_at=self._reopens_at(settings) if to == "open" else None,
            subtask_id=getattr(cause, "subtask_id", None),
        )


@dataclass
class Breakers:
    """This process's breakers, created on first use. One per agent and one per tool."""

    clock: Clock = time.time
    _by_key: dict[tuple[Scope, str], CircuitBreaker] = field(default_factory=dict)

    def get(self, scope: Scope, name: str) -> CircuitBreaker:
        key = (scope, name)
        breaker = self._by_key.get(key)
        if breaker is None:
            breaker = self._by_key[key] = CircuitBreaker(scope, name, self.clock)
        return breaker
