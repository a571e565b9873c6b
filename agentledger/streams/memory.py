"""In-memory EventLog, for unit tests. Stores encoded bytes so it behaves like a real log."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from agentledger.errors import SequenceConflictError
from agentledger.schemas import EventBase
from agentledger.schemas.codec import encode
from agentledger.security.masking import Masker
from agentledger.streams.log import LogEntry, Recorded, TaskSummary, decode_entry
from agentledger.streams.write_guard import WriteGuard


@dataclass(slots=True)
class _Row:
    offset: int
    task_id: str
    seq: int
    data: bytes
    event: EventBase


class MemoryEventLog:
    def __init__(self, *, guard: WriteGuard | None = None) -> None:
        # Masked like every log; the raw values live in a vault of this process only.
        self.guard = guard if guard is not None else WriteGuard(Masker())
        self._rows: list[_Row] = []
        self._by_task: dict[str, list[_Row]] = {}
        self._seqs: set[tuple[str, int]] = set()
        self._positions: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        events = self.guard(events)
        encoded = [(e, encode(e)) for e in events]
        keys = [(e.task_id, e.seq) for e in events]
        for key in keys:
            if key in self._seqs or keys.count(key) > 1:
                raise SequenceConflictError(*key)
        out: list[Recorded] = []
        for event, data in encoded:
            row = _Row(len(self._rows) + 1, event.task_id, event.seq, data, event)
            self._rows.append(row)
            self._by_task.setdefault(event.task_id, []).append(row)
            self._seqs.add((event.task_id, event.seq))
            out.append(Recorded(row.offset, event))  # type: ignore[arg-type]
        async with self._changed:
            self._changed.notify_all()
        return out

    def inject_raw(self, task_id: str, seq: int, data: bytes) -> int:
        """Store arbitrary bytes as if an event (tests use it to plant corrupt records)."""
        from agentledger.schemas import GoalSubmitted, WorkflowRef

        placeholder = GoalSubmitted(task_id=task_id, goal="-", workflow=WorkflowRef(name="-"))
        row = _Row(len(self._rows) + 1, task_id, seq, data, placeholder)
        self._rows.append(row)
        self._by_task.setdefault(task_id, []).append(row)
        self._seqs.add((task_id, seq))
        return row.offset

    async def read_task(self, task_id: str, *, after_seq: int = 0) -> list[LogEntry]:
        rows = sorted(self._by_task.get(task_id, []), key=lambda r: r.seq)
        return [decode_entry(r.offset, r.task_id, r.seq, r.data) for r in rows if r.seq > after_seq]

    async def read_from(self, after: int = 0, *, limit: int | None = None) -> list[LogEntry]:
        rows = self._rows[after:]
        if limit is not None:
            rows = rows[:limit]
        return [decode_entry(r.offset, r.task_id, r.seq, r.data) for r in rows]

    async def follow(
        self, after: int = 0, *, task_id: str | None = None, poll_interval: float = 0.05
    ) -> AsyncIterator[LogEntry]:
        position = after

        def has_news(seen: int) -> bool:
            return len(self._rows) > seen

        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(has_news, position))
            for entry in await self.read_from(position):
                position = entry.offset
                if task_id is None or self._rows[entry.offset - 1].task_id == task_id:
                    yield entry

    async def last_offset(self) -> int:
        return len(self._rows)

    async def tasks(self, *, limit: int = 100) -> list[TaskSummary]:
        out = []
        for task_id, rows in self._by_task.items():
            first, last = rows[0].event, rows[-1].event
            out.append(
                TaskSummary(
                    task_id,
                    len(rows),
                    first.occurred_at,
                    last.occurred_at,
                    last.event_type,
                )
            )
        out.sort(key=lambda s: s.last_at, reverse=True)
        return out[:limit]

    async def get_position(self, consumer: str) -> int:
        return self._positions.get(consumer, 0)

    async def set_position(self, consumer: str, offset: int) -> None:
        self._positions[consumer] = offset

    async def close(self) -> None:
        return None
