"""Long-term and episodic memory as a projection of the log.

``changes(event)`` is the pure fold: which index changes an event implies (a write, an
erasure, an episode starting or ending). ``MemoryProjection`` feeds it from any EventLog
(SQLite embedded, or a Kafka-backed EventLog): it reads past its stored position, embeds the
texts of the batch, and applies the changes together with the new position.

Because the index is only ever derived from the log, ``rebuild`` (drop the file and replay
from offset 0) gives the same index as the incremental updates did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from agentledger.memory.embedders import Embedder
from agentledger.memory.store import (
    Change,
    EpisodeEnded,
    EpisodeStarted,
    Erase,
    MemoryStore,
    Upsert,
)
from agentledger.schemas import (
    Event,
    GoalSubmitted,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
)
from agentledger.schemas.memory import MemoryErased, MemoryWritten
from agentledger.streams.log import EventLog, events_of

BATCH_SIZE = 500
OUTCOME_CHARS = 500


def changes(event: Event, vector: list[float] | None = None) -> list[Change]:
    """The index changes ``event`` implies (``vector``: the embedding of a write's text)."""
    match event:
        case MemoryWritten():
            assert vector is not None, "a memory_written event needs its embedding"
            return [
                Upsert(
                    namespace=event.namespace,
                    key=event.key,
                    text=event.text,
                    metadata=dict(event.metadata),
                    source=event.source.model_dump(mode="json"),
                    task_id=event.task_id,
                    event_id=event.event_id,
                    written_at=stamp(event.occurred_at),
                    vector=vector,
                )
            ]
        case MemoryErased():
            return [Erase(event.namespace, event.key, stamp(event.occurred_at))]
        case GoalSubmitted():
            session, user = event.inputs.get("session"), event.inputs.get("user")
            return [
                EpisodeStarted(
                    task_id=event.task_id,
                    workflow=event.workflow.name,
                    user=user if isinstance(user, str) else (event.submitted_by or ""),
                    session=session if isinstance(session, str) else "",
                    goal=event.goal,
                    started_at=stamp(event.occurred_at),
                )
            ]
        case TaskCompleted():
            return [_ended(event, "completed", _short(event.result))]
        case TaskFailed():
            return [_ended(event, "failed", event.reason)]
        case TaskCancelled():
            return [_ended(event, "cancelled", event.reason)]
    return []


def _ended(event: Event, status: str, outcome: str) -> EpisodeEnded:
    return EpisodeEnded(event.task_id, status, outcome[:OUTCOME_CHARS], stamp(event.occurred_at))


def stamp(moment: datetime) -> str:
    """A fixed-width UTC time: text order is time order (what the index compares)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _short(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


async def embedded_changes(events: Sequence[Event], embedder: Embedder) -> list[Change]:
    """The changes of ``events``, the texts written embedded in one batch."""
    writes = [e for e in events if isinstance(e, MemoryWritten)]
    vectors = await embedder.embed([w.text for w in writes]) if writes else []
    by_id = {w.event_id: v for w, v in zip(writes, vectors, strict=True)}
    out: list[Change] = []
    for event in events:
        out.extend(changes(event, by_id.get(event.event_id)))
    return out


class MemoryProjection:
    """Keeps ``store`` up to date with ``log``; safe to call from many tasks at once."""

    def __init__(self, log: EventLog, store: MemoryStore, embedder: Embedder) -> None:
        self.log = log
        self.store = store
        self.embedder = embedder
        self._lock = asyncio.Lock()

    async def catch_up(self, batch_size: int = BATCH_SIZE) -> int:
        """Apply every event appended since the stored position; return the new position."""
        async with self._lock:
            position = await asyncio.to_thread(self.store.position)
            end = await self.log.last_offset()
            while position < end:
                entries = await self.log.read_from(position, limit=min(batch_size, end - position))
                if not entries:
                    break
                events = events_of(entries)
                batch = await embedded_changes(events, self.embedder)
                applied = await asyncio.to_thread(
                    self.store.apply, batch, expected=position, position=entries[-1].offset
                )
                # Another process applied this batch first: carry on from where it got to.
                position = entries[-1].offset if applied else self.store.position()
            return position

    async def rebuild(self) -> int:
        """Drop the index and replay the whole log into it."""
        async with self._lock:
            store = self.store
            await asyncio.to_thread(store.close)
            self.store = await asyncio.to_thread(
                MemoryStore.recreate,
                store.path,
                identity=self.embedder.identity,
                dimensions=self.embedder.dimensions,
            )
        return await self.catch_up()
