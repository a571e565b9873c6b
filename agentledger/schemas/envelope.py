"""The envelope every event carries, and the helpers that fill it."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

_last_ms = 0
_counter = 0
_RANDOM_CHUNK = 4096  # 512 ids' worth of randomness per getrandom() call
_random = b""
_random_at = 0
_ids_lock = threading.Lock()  # ids may be made in threads too (tools, exporters)


def _forget_random() -> None:
    """A forked child must not hand out its parent's remaining random bytes again."""
    global _random, _random_at, _ids_lock
    _random, _random_at = b"", 0
    _ids_lock = threading.Lock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_forget_random)


def _random64() -> int:
    """Eight bytes from the OS's generator, read a chunk at a time: one system call per
    event id was about a quarter of ``new_event_id``'s cost, more on a loaded machine."""
    global _random, _random_at
    if _random_at >= len(_random):
        _random, _random_at = os.urandom(_RANDOM_CHUNK), 0
    at = _random_at
    _random_at = at + 8
    return int.from_bytes(_random[at : at + 8], "big")


def new_event_id() -> str:
    """A unique, time-ordered id (UUIDv7 layout: 48-bit ms timestamp, then randomness).

    Ids made in one process are strictly increasing, so sorting by id sorts by creation.
    """
    global _last_ms, _counter
    with _ids_lock:  # two threads must never take the same counter or random bytes
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
        rand = _random64()
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= (counter & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & 0x3FFF_FFFF_FFFF_FFFF)  # RFC 4122 variant
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventBase(BaseModel):
    """Fields every event has. Subclasses add a ``type`` literal and their facts.

    ``seq`` is the event's position within its task. Processors create events with
    ``seq=0``; the single writer of a task stamps the real value when it appends.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: str = Field(default_factory=new_event_id)
    task_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(default=0, ge=0)
    causation_id: str | None = None
    correlation_id: str | None = None
    agent: str | None = None
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    schema_version: int = 1

    @property
    def event_type(self) -> str:
        """The ``type`` tag, readable on the base class too."""
        tag = self.__dict__.get("type")  # the field's value: a dict lookup, not model_fields
        return tag if isinstance(tag, str) else str(type(self).model_fields["type"].default)

    def model_post_init(self, __context: Any) -> None:
        if self.occurred_at.utcoffset() != UTC.utcoffset(None):
            object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))

    @classmethod
    def caused_by(cls, cause: EventBase, **fields: Any) -> Self:
        """An event caused by ``cause``: same task and correlation, ``causation_id`` set."""
        fields.setdefault("agent", cause.agent)
        return cls(
            task_id=cause.task_id,
            causation_id=cause.event_id,
            correlation_id=cause.correlation_id,
            schema_version=cls.SCHEMA_VERSION,
            **fields,
        )
