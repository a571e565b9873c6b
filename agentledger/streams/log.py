"""The EventLog protocol: the one seam between processors and their transport.

Offsets are global, start at 1 and only grow. ``seq`` is an event's position within its
task, stamped by the task's single writer before append; the log refuses a second event at
the same ``(task_id, seq)``, so two writers of one task cannot silently interleave.

Reads return ``LogEntry`` values: a ``Recorded`` event, or a ``CorruptRecord`` for stored
bytes that are not a valid event. A corrupt record is reported with its offset; it never
hides the records around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from agentledger.errors import CorruptEventError
from agentledger.schemas import Event, EventBase
from agentledger.schemas.codec import EventDecodeError, decode

if TYPE_CHECKING:
    from agentledger.streams.write_guard import WriteGuard


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as stored, with its global offset."""

    offset: int
    event: Event


@dataclass(frozen=True, slots=True)
class CorruptRecord:
    """Stored bytes that do not decode into a known, valid event."""

    offset: int
    task_id: str
    seq: int | None
    reason: str
    data: bytes

    def error(self) -> CorruptEventError:
        return CorruptEventError(self.offset, self.reason)


LogEntry = Recorded | CorruptRecord


@dataclass(frozen=True, slots=True)
class TaskSummary:
    task_id: str
    events: int
    first_at: datetime  # UNKNOWN_TIME when the stored timestamp is unreadable
    last_at: datetime
    last_type: str


UNKNOWN_TIME = datetime.min.replace(tzinfo=UTC)
"""Stands for a stored timestamp that cannot be read (a corrupt row): sorts first."""


def decode_entry(offset: int, task_id: str, seq: object, data: object) -> LogEntry:
    """One stored record as a ``LogEntry``. Never raises: whatever the record holds (TEXT or
    NULL where bytes belong, a seq that is not a number, bytes that are not JSON), the
    answer is a ``CorruptRecord`` saying why, at its offset."""
    row_seq = seq if isinstance(seq, int) else None
    if seq is not None and row_seq is None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else b""
        return CorruptRecord(offset, str(task_id), None, f"seq stored as {seq!r}", raw)
    if isinstance(data, str):
        raw = data.encode("utf-8", "surrogatepass")
        return CorruptRecord(offset, str(task_id), row_seq, "data stored as TEXT, not BLOB", raw)
    if not isinstance(data, bytes | bytearray | memoryview):
        kind = "NULL" if data is None else type(data).__name__
        return CorruptRecord(offset, str(task_id), row_seq, f"data stored as {kind}", b"")
    raw = bytes(data)
    try:
        return Recorded(offset, decode(raw))
    except EventDecodeError as exc:
        return CorruptRecord(offset, str(task_id), row_seq, exc.reason, raw)


def decode_row(offset: int, task_id: str, seq: object, data: object) -> LogEntry:
    """``decode_entry`` for a store whose row columns are authoritative (SQLite): an event
    that disagrees with its own row about its task or seq is corrupt too, since the driver
    would otherwise stamp and skip by the wrong position."""
    entry = decode_entry(offset, task_id, seq, data)
    if isinstance(entry, Recorded) and (entry.event.task_id, entry.event.seq) != (task_id, seq):
        reason = (
            f"the row says task {task_id} seq {seq}, "
            f"the event inside says task {entry.event.task_id} seq {entry.event.seq}"
        )
        raw = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else b""
        return CorruptRecord(offset, task_id, seq if isinstance(seq, int) else None, reason, raw)
    return entry


@runtime_checkable
class EventLog(Protocol):
    """Append-only, durable event storage with tracked consumer positions.

    ``append`` passes every batch through ``guard`` (masking, see ``write_guard``) before
    it stores anything; a runner installs its runtime's guard."""

    guard: WriteGuard

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        """Append a batch atomically (all or none), in order. Returns them with offsets.

        Raises SequenceConflictError when an event's ``(task_id, seq)`` is taken.
        """
        ...

    async def read_task(self, task_id: str, *, after_seq: int = 0) -> list[LogEntry]:
        """A task's events with ``seq > after_seq``, in seq order."""
        ...

    async def read_from(self, after: int = 0, *, limit: int | None = None) -> list[LogEntry]:
        """Events of every task with offset > ``after``, in offset order."""
        ...

    def follow(
        self, after: int = 0, *, task_id: str | None = None, poll_interval: float = 0.05
    ) -> AsyncIterator[LogEntry]:
        """Yield events past ``after`` as they are appended, forever (cancel to stop)."""
        ...

    async def last_offset(self) -> int: ...

    async def tasks(self, *, limit: int = 100) -> list[TaskSummary]:
        """The most recently active tasks, newest first."""
        ...

    async def get_position(self, consumer: str) -> int:
        """The stored offset of ``consumer`` (0 when it has none)."""
        ...

    async def set_position(self, consumer: str, offset: int) -> None: ...

    async def close(self) -> None: ...


def events_of(entries: Iterable[LogEntry]) -> list[Event]:
    """The events among ``entries``, corrupt records left out (a reader that must report
    them goes through the entries itself)."""
    return [e.event for e in entries if isinstance(e, Recorded)]


async def task_events(log: EventLog, task_id: str) -> list[Event]:
    """A task's events in seq order, corrupt records left out."""
    return events_of(await log.read_task(task_id))
