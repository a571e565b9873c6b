"""What two events have in common when ids and clocks are set aside.

Verify, fork and diff compare events made at different times (and, for a fork, in another
task): their ids, positions, timestamps, latencies, prices and the ids a model made up for
its tool calls differ without anything having changed. ``essence`` drops those (and
turns deadlines into offsets from their event);
``differences`` lists the fields where two essences part, with both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentledger.schemas import EventBase
from agentledger.schemas.codec import to_dict

IGNORED_FIELDS = frozenset(
    {
        "event_id",
        "task_id",
        "seq",
        "causation_id",
        "correlation_id",
        "occurred_at",
        "latency_ms",
        "cost_usd",
        "call_id",  # made up by the model (a scripted one counts them per process)
        "tool_call_id",
        "raw_response",  # the provider's body: ids and timestamps of its own
    }
)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IGNORED_FIELDS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


# Deadlines are set from the clock when the event is made: what must match is how long
# after the event they fall (to a tenth of a second), not the instant.
RELATIVE_TIMES = ("expires_at", "reopens_at")


def essence(event: EventBase) -> dict[str, Any]:
    """The event as JSON, without the fields that differ between equivalent runs."""
    out: dict[str, Any] = _strip(to_dict(event))
    for name in RELATIVE_TIMES:
        when = getattr(event, name, None)
        if isinstance(when, datetime):
            out[name] = f"{(when - event.occurred_at).total_seconds():+.1f} s after the event"
    return out


@dataclass(frozen=True)
class FieldDifference:
    path: str
    recorded: Any
    replayed: Any

    def __str__(self) -> str:
        return f"{self.path}: recorded {_show(self.recorded)}, now {_show(self.replayed)}"


_MISSING = "<absent>"


def differences(a: Any, b: Any, path: str = "") -> list[FieldDifference]:
    """Where ``a`` and ``b`` differ, field by field (lists element by element)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[FieldDifference] = []
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else str(key)
            out += differences(a.get(key, _MISSING), b.get(key, _MISSING), sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [FieldDifference(path or "(value)", a, b)]


def _show(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
