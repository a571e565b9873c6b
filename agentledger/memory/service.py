"""MemoryService: long-term and episodic memory for a runtime, over one event log.

    store = MemoryStore(settings.home / "memory.db", identity=e.identity, dimensions=e.dimensions)
    memory = MemoryService(log, store, embedder)
    runtime = Runtime(..., memory=memory)

Every read first brings the index up to the log's end (``catch_up``), so a memory written
by one task is found by the next one, in this process or another one sharing the ledger.
Writes are never made here: they are ``memory_written`` events in the log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agentledger.errors import SequenceConflictError, UsageError
from agentledger.memory.embedders import Embedder
from agentledger.memory.projection import MemoryProjection
from agentledger.memory.store import MemoryItem, MemoryStore
from agentledger.schemas import EventBase
from agentledger.schemas.memory import MemoryErased
from agentledger.security.masking import Masker
from agentledger.streams.log import EventLog, Recorded

ERASURE_STREAM = "memory-erasures"
"""The log stream (task id) erasures requested by people are appended to."""


class MemoryService:
    def __init__(self, log: EventLog, store: MemoryStore, embedder: Embedder) -> None:
        self.log = log
        self.embedder = embedder
        self.projection = MemoryProjection(log, store, embedder)

    @classmethod
    def open(
        cls, log: EventLog, path: str | Path, embedder: Embedder, *, fresh: bool = False
    ) -> MemoryService:
        """The service over the index at ``path``; ``fresh``: delete it first (a rebuild,
        e.g. with another embedder than the one it was built with)."""
        opener = MemoryStore.recreate if fresh else MemoryStore
        store = opener(path, identity=embedder.identity, dimensions=embedder.dimensions)
        return cls(log, store, embedder)

    @property
    def store(self) -> MemoryStore:
        return self.projection.store

    async def search(self, namespace: str, query: str, top_k: int) -> list[dict[str, Any]]:
        hits = await self.search_items(namespace, query, top_k)
        return [h.as_json() for h in hits]

    async def search_items(self, namespace: str, query: str, top_k: int) -> list[MemoryItem]:
        await self.projection.catch_up()
        [vector] = await self.embedder.embed([query])
        return await asyncio.to_thread(self.store.search, namespace, vector, top_k)

    async def episodes(self, task_id: str, scope: str, limit: int) -> list[dict[str, str]]:
        """Tasks started before this one that share its workflow, user or session
        (``scope``), newest first."""
        await self.projection.catch_up()
        current = await asyncio.to_thread(self.store.episode, task_id)
        if current is None or not current[scope]:
            return []
        return await asyncio.to_thread(
            self.store.episodes,
            exclude_task=task_id,
            before=current["started_at"],
            limit=limit,
            **{scope: current[scope]},
        )

    async def items(self, namespace: str | None = None, *, limit: int = 100) -> list[MemoryItem]:
        await self.projection.catch_up()
        return await asyncio.to_thread(self.store.items, namespace, limit=limit)

    async def forget(
        self,
        namespace: str,
        key: str | None = None,
        *,
        reason: str = "",
        requested_by: str | None = None,
        masker: Masker | None = None,
    ) -> MemoryErased:
        """Record the erasure of a key (or a whole namespace) and apply it to the index."""
        if not namespace:
            raise UsageError("say which namespace to forget")
        for _ in range(5):  # another erasure may take the same seq: try the next one
            last = [e for e in await self.log.read_task(ERASURE_STREAM) if isinstance(e, Recorded)]
            event: EventBase = MemoryErased(
                task_id=ERASURE_STREAM,
                seq=(last[-1].event.seq if last else 0) + 1,
                namespace=namespace,
                key=key,
                reason=reason,
                requested_by=requested_by,
            )
            event = (masker or Masker()).mask_event(event)  # the one write path's masking
            try:
                await self.log.append([event])
            except SequenceConflictError:
                continue
            await self.projection.catch_up()
            assert isinstance(event, MemoryErased)
            return event
        raise UsageError("could not record the erasure: the erasure stream kept moving; retry")

    async def rebuild(self) -> int:
        return await self.projection.rebuild()

    def close(self) -> None:
        self.store.close()

    async def aclose(self) -> None:
        """Close the index and the embedder's HTTP connections (if it has any)."""
        self.close()
        close = getattr(self.embedder, "aclose", None)
        if close is not None:
            await close()
