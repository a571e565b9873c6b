"""The one place events become bytes and bytes become events (orjson)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

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
    # pydantic-core writes the JSON itself: the same bytes as ``orjson.dumps`` of
    # ``model_dump(mode="json")``, in half the time (no intermediate dict). It also takes
    # integers beyond 64 bits, which ``decode`` now reads back exactly.
    try:
        data = event.model_dump_json().encode()
    except PydanticSerializationError as exc:  # e.g. a lone surrogate: a TypeError as before
        raise TypeError(str(exc)) from None
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
    return _validate(raw, data)


def from_dict(raw: Any) -> Event:
    return _validate(raw, None)


def _validate(raw: Any, data: bytes | str | None) -> Event:
    """``raw`` (parsed from ``data`` when given) as an event."""
    if not isinstance(raw, dict):
        raise EventDecodeError(f"expected a JSON object, got {type(raw).__name__}")
    tag = raw.get("type")
    cls = EVENT_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise EventDecodeError(f"unknown event type {tag!r}")
    try:
        if data is not None and raw.get("schema_version", 1) == cls.SCHEMA_VERSION:
            # Current version, nothing to upcast: pydantic-core validates the bytes
            # directly, twice as fast as validating the parsed dict.
            return EVENT_ADAPTER.validate_json(data)
        return EVENT_ADAPTER.validate_python(upcast(raw, cls.SCHEMA_VERSION))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise EventDecodeError(f"invalid {tag} event: {problems}") from None
    except ValueError as exc:
        raise EventDecodeError(str(exc)) from None
