"""The embedded runner: one process, asyncio, any EventLog (SQLite by default).

    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("Write a brief on ...")
    state = await runner.run(task_id)

``run`` drives a task until it ends; it also resumes a task left unfinished by a crash,
because it starts from whatever the log holds. It returns early when nothing can happen
until a person decides a pending approval (``state.pending_approvals``); approval deadlines
that passed are recorded whenever it drives the task.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from agentledger.agents.approvals import EXTERNAL_DECISIONS, expired_approvals
from agentledger.agents.context import Runtime
from agentledger.errors import SequenceConflictError, UnknownTaskError
from agentledger.projections.task_state import TaskState
from agentledger.schemas import (
    Event,
    EventBase,
    GoalSubmitted,
    WorkflowRef,
    new_event_id,
    utc_now,
)
from agentledger.security.guard import admit_goal
from agentledger.security.logs import install_log_redaction
from agentledger.streams.driver import TaskDriver
from agentledger.streams.log import CorruptRecord, EventLog, Recorded
from agentledger.streams.write_guard import WriteGuard

log = logging.getLogger(__name__)

EventCallback = Callable[[Event, bool], Any]
"""Called for every event the runner dispatches, with ``True`` for events it just wrote."""


class EmbeddedRunner:
    def __init__(
        self,
        log: EventLog,
        runtime: Runtime,
        *,
        on_event: EventCallback | None = None,
        on_corrupt: Callable[[CorruptRecord], Any] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.log = log
        self.runtime = runtime
        # Every append masked with this runtime's vault (raw only if the workflow says so).
        log.guard = WriteGuard(runtime.masker, masked=runtime.workflow.security.masked)
        self.on_event = on_event
        self.on_corrupt = on_corrupt
        self.clock = clock  # what "now" is when approval deadlines are checked
        install_log_redaction()

    async def submit(
        self,
        goal: str,
        *,
        inputs: dict[str, JsonValue] | None = None,
        task_id: str | None = None,
        submitted_by: str | None = None,
    ) -> str:
        """Record a goal as a new task and return its id (the task runs with ``run``)."""
        wf = self.runtime.workflow
        task_id = task_id or new_event_id()
        event = GoalSubmitted(
            task_id=task_id,
            seq=1,
            correlation_id=task_id,
            goal=goal,
            workflow=WorkflowRef(
                name=wf.name, path=str(wf.source) if wf.source else None, digest=wf.digest
            ),
            inputs=inputs or {},
            submitted_by=submitted_by,
        )
        await self.log.append(admit_goal(event, self.runtime))
        return task_id

    async def run(self, task_id: str) -> TaskState:
        """Drive the task until it ends (or nothing more can happen); return its state."""
        entries = await self.log.read_task(task_id)
        if not entries:
            raise UnknownTaskError(task_id)
        history: list[Event] = []
        for entry in entries:
            if isinstance(entry, Recorded):
                history.append(entry.event)
            else:
                log.error("task %s: %s; skipping it", task_id, entry.error())
                if self.on_corrupt is not None:
                    self.on_corrupt(entry)

        queue: deque[tuple[Event, bool]] = deque((e, False) for e in history)
        wake = asyncio.Event()

        async def sink(batch: list[EventBase]) -> None:
            try:
                recorded = await self.log.append(batch)
            except SequenceConflictError:
                # A person's decision was appended meanwhile: take it in, append after it.
                decisions = await self._decisions_since(task_id, batch[0].seq - 1)
                if not decisions:
                    raise  # another runner is writing this task (or nothing to take in)
                queue.extend((e, False) for e in decisions)
                driver.note_appended(decisions)
                start = decisions[-1].seq + 1
                batch = [e.model_copy(update={"seq": start + i}) for i, e in enumerate(batch)]
                recorded = await self.log.append(batch)
                driver.note_appended(batch)
            queue.extend((r.event, True) for r in recorded)
            wake.set()

        driver = TaskDriver(self.runtime, task_id, sink)
        driver.load(history)
        try:
            while True:
                while queue:
                    event, fresh = queue.popleft()
                    driver.dispatch(event)
                    if self.on_event is not None:
                        self.on_event(event, fresh)
                if driver.fatal is not None:
                    raise driver.fatal
                if driver.state.terminal:
                    break
                expired = expired_approvals(driver.state, self.clock())
                if expired:
                    await driver.emit(expired)
                    continue
                if not driver.busy:
                    decisions = await self._decisions_since(task_id, driver.next_seq - 1)
                    if decisions:  # decided by a person while this run was busy
                        queue.extend((e, False) for e in decisions)
                        driver.note_appended(decisions)
                        continue
                    break  # nothing in flight and nothing queued: the task is waiting
                wake.clear()
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait(
                        {waiter, *driver.inflight()}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waiter.cancel()
        finally:
            await driver.cancel()
        return driver.state

    async def _decisions_since(self, task_id: str, seq: int) -> list[Event] | None:
        """Events appended to the task after ``seq`` by another process, when they are all
        approval decisions (``None`` when another runner is writing the task)."""
        fresh = [
            e.event
            for e in await self.log.read_task(task_id, after_seq=seq)
            if isinstance(e, Recorded)
        ]
        if any(e.type not in EXTERNAL_DECISIONS for e in fresh):
            return None
        return fresh
