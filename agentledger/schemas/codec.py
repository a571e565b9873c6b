"""The one place events become bytes and bytes become events (orjson)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from agentledger.schemas.catalog import EVENT_ADAPTER, EVENT_TYPES, Event
from agentledger.schemas.envelope import EventBase
from agentledger.schemas.upcasters import upcast

MAX_EVENT_BYTES = 1_000_000
"""Events are facts, not blobs: an event larger than this is refused at encode time."""


class EventDecodeError(ValueError):
    """Bytes that are not a known, valid event. ``reason`` says which way they are not."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class EventTooLargeError(ValueError):
    pass


def encode(event: EventBase) -> bytes:
    data = orjson.dumps(event.model_dump(mode="json", exclude_none=False))
    if len(data) > MAX_EVENT_BYTES:
        raise EventTooLargeError(
            f"{event.event_type} event for task {event.task_id} is "
            f"{len(data)} bytes, over the {MAX_EVENT_BYTES}-byte limit; keep large payloads "
            "out of events (store them and record a reference)"
        )
    return data


def to_dict(event: EventBase) -> dict[str, Any]:
    return event.model_dump(mode="json")


def decode(data: bytes | str) -> Event:
    """Decode one event, upcasting old schema versions. Raises EventDecodeError."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"not JSON: {exc}") from None
    return from_dict(raw)


def from_dict(raw: Any) -> Event:
    if not isinstance(raw, dict):
        raise EventDecodeError(f"expected a JSON object, got {type(raw).__name__}")
    tag = raw.get("type")
    cls = EVENT_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise EventDecodeError(f"unknown event type {tag!r}")
    try:
        raw = upcast(raw, cls.SCHEMA_VERSION)
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise EventDecodeError(f"invalid {tag} event: {problems}") from None
    except ValueError as exc:
        raise EventDecodeError(str(exc)) from None
