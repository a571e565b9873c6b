"""RunIndex: the state of every task in a log, kept current by following the log.

It is the console's one reader of the whole log: a projection (``evolve`` per event) that
starts at offset 0 and then follows new appends, so the runs list and every live view are
woken by one loop instead of one poll per browser.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from agentledger.projections.erasures import Erasures
from agentledger.projections.task_state import TaskState, evolve
from agentledger.streams.log import CorruptRecord, EventLog, Recorded

logger = logging.getLogger(__name__)


class RunIndex:
    """Task states by id, and a version number that grows with every event taken in."""

    def __init__(self, log: EventLog, *, poll_interval: float = 0.1) -> None:
        self.log = log
        self.poll_interval = poll_interval
        self.states: dict[str, TaskState] = {}
        self.corrupt: list[CorruptRecord] = []
        self.erasures = Erasures()  # forgotten memories, hidden from every page
        self.version = 0
        self.offset = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._take(await self.log.read_from(0))
        self._task = asyncio.create_task(self._follow(), name="agentledger-console-index")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while True:
            try:
                async for entry in self.log.follow(self.offset, poll_interval=self.poll_interval):
                    await self._take([entry])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a transient read error must not end the console's view
                logger.warning("console: reading the log failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _take(self, entries: list[Recorded | CorruptRecord]) -> None:
        if not entries:
            return
        for entry in entries:
            self.offset = max(self.offset, entry.offset)
            if isinstance(entry, CorruptRecord):
                self.corrupt.append(entry)
                continue
            event = entry.event
            if event.seq == 0:  # an unstamped decision on Kafka: its worker records it
                continue
            self.erasures.take(event)
            state = self.states.get(event.task_id) or TaskState(task_id=event.task_id)
            self.states[event.task_id] = evolve(state, event)
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def wait_change(self, seen: int, keepalive_s: float = 15.0) -> int:
        """Wait until the version passes ``seen`` (or ``keepalive_s``); return it."""
        async with self._changed:
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version > seen), keepalive_s
                )
            return self.version

    def runs(self) -> list[TaskState]:
        """Tasks, newest first. Streams that are not tasks (an eval run's, memory erasures)
        have no goal: they are not runs and are left out."""
        return sorted(
            (s for s in self.states.values() if s.started_at is not None),
            key=lambda s: (s.started_at.timestamp() if s.started_at else 0.0, s.task_id),
            reverse=True,
        )
