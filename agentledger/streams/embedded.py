"""The embedded runner: one process, asyncio, any EventLog (SQLite by default).

    runner = EmbeddedRunner(log, runtime)
    task_id = await runner.submit("Write a brief on ...")
    state = await runner.run(task_id)

``run`` drives a task until it ends; it also resumes a task left unfinished by a crash,
because it starts from whatever the log holds. The task's lifecycle (history, MCP pins,
dispatch, a person's decisions, approval expiry) is ``task_host.TaskHost``, the same as on
the Kafka worker; this module keeps the transport: the lease, its heartbeat, the signal
drain, and the SQLite file check. It returns early when nothing can happen
until a person decides a pending approval (``state.pending_approvals``); approval deadlines
that passed are recorded whenever it drives the task.

Ownership: with a lease store (the SQLite ledger has one) ``run`` takes the task's lease
before it dispatches anything and renews it on a timer, so a second process refuses the
task instead of writing into it (streams/lease.py). A task holding a record that cannot be
decoded is quarantined: ``run`` refuses it (``QuarantinedTaskError``) rather than drive it
from a partial history. ``request_stop`` (a signal) stops new work, gives in-flight
reactions ``grace_s`` to finish, records ``run_interrupted`` and returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from agentledger.agents.context import Runtime
from agentledger.errors import (
    LeaseLostError,
    QuarantinedTaskError,
    SequenceConflictError,
    UnknownTaskError,
)
from agentledger.projections.task_state import TaskState, fold
from agentledger.schemas import (
    Event,
    EventBase,
    GoalSubmitted,
    RunInterrupted,
    TaskLeaseTakenOver,
    WorkflowRef,
    new_event_id,
    utc_now,
)
from agentledger.security.guard import admit_goal
from agentledger.security.logs import install_log_redaction
from agentledger.streams.driver import TaskDriver
from agentledger.streams.lease import Owner, SqliteLeases, Takeover
from agentledger.streams.log import CorruptRecord, EventLog, Recorded
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.streams.task_host import History, TaskHost, finished
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
        leases: SqliteLeases | None = None,
        lease_stale_after_s: float = 30.0,
        take_over: bool = False,
        grace_s: float = 10.0,
    ) -> None:
        self.log = log
        self.runtime = runtime
        # Every append masked with this runtime's vault (raw only if the workflow says so).
        log.guard = WriteGuard(runtime.masker, masked=runtime.workflow.security.masked)
        self.on_event = on_event
        self.on_corrupt = on_corrupt
        self.clock = clock  # what "now" is when approval deadlines are checked
        if leases is None and isinstance(log, SqliteEventLog):
            leases = log.leases
        self.leases = leases
        self.owner = Owner.this_process()
        self.lease_stale_after_s = lease_stale_after_s
        self.take_over = take_over
        self.grace_s = grace_s
        self.interrupted: RunInterrupted | None = None
        self._stop_signal: str | None = None
        self._wake: asyncio.Event | None = None
        install_log_redaction()

    def request_stop(self, signal_name: str = "SIGTERM") -> None:
        """Stop starting new work; in-flight reactions get ``grace_s`` to finish. A second
        request cuts the grace short. Safe to call from a signal handler in the loop."""
        if self._stop_signal is not None:
            self.grace_s = 0.0
        self._stop_signal = self._stop_signal or signal_name
        if self._wake is not None:
            self._wake.set()

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
        """Drive the task until it ends (or nothing more can happen); return its state.

        Raises QuarantinedTaskError for an unfinished task holding a corrupt record,
        TaskLeasedError when another live process drives it, LeaseLostError when another
        process takes it over meanwhile (``--take-over``).
        """
        history = await self._history(task_id)
        takeover: Takeover | None = None
        if not finished(history):
            takeover = self._take_lease(task_id)
            # Read again under the lease: the previous owner may have written meanwhile.
            try:
                history = await self._history(task_id)
            except BaseException:
                self._release(task_id)
                raise
            if finished(history):
                self._release(task_id)
        if finished(history):
            state = fold(task_id, history)  # nothing to drive
            if self.on_event is not None:
                for event in history:
                    self.on_event(event, False)
            return state

        queue: deque[tuple[Event, bool]] = deque((e, False) for e in history)
        wake = self._wake = asyncio.Event()

        async def append(batch: list[EventBase]) -> None:
            try:
                recorded = await self.log.append(batch)
            except SequenceConflictError:
                # A person's decision was appended meanwhile: take it in, append after it.
                decisions = await self._decisions_since(host, batch[0].seq - 1)
                if not decisions:
                    raise  # another runner is writing this task (or nothing to take in)
                queue.extend((e, False) for e in decisions)
                start = decisions[-1].seq + 1
                batch = [e.model_copy(update={"seq": start + i}) for i, e in enumerate(batch)]
                recorded = await self.log.append(batch)
                driver.note_appended(batch)
            queue.extend((r.event, True) for r in recorded)
            wake.set()

        host = TaskHost(self.runtime, task_id, append)
        driver = host.driver
        host.load(history)
        lost: list[LeaseLostError] = []
        heartbeat = asyncio.create_task(self._heartbeat(task_id, lost, wake), name="lease")
        try:
            if takeover is not None:
                await driver.emit([self._takeover_event(task_id, takeover)])
            await host.start_tools(history)
            while True:
                if self._stop_signal is not None:
                    await self._drain(driver, wake)
                    break
                while queue:
                    event, fresh = queue.popleft()
                    host.dispatch(event)
                    if self.on_event is not None:
                        self.on_event(event, fresh)
                if driver.fatal is not None:
                    raise driver.fatal
                if lost:
                    raise lost[0]
                if host.finished:
                    break
                expired = host.expired(self.clock())
                if expired:
                    await driver.emit(expired)
                    continue
                if not host.busy:
                    decisions = await self._decisions_since(host, driver.next_seq - 1)
                    if decisions:  # decided by a person while this run was busy
                        queue.extend((e, False) for e in decisions)
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
            heartbeat.cancel()
            await driver.cancel()
            if not lost:
                self._release(task_id)
        if isinstance(self.log, SqliteEventLog):
            self.log.check_file()  # never report an outcome written into a vanished file
        return driver.state

    async def _history(self, task_id: str) -> list[Event]:
        """The task's events; raises QuarantinedTaskError when an unfinished task holds a
        record that cannot be decoded (a finished one is only reported)."""
        entries = await self.log.read_task(task_id)
        if not entries:
            raise UnknownTaskError(task_id)
        history = History.of(entries)
        for bad in history.corrupt:
            log.error("task %s: %s", task_id, bad.error())
            if self.on_corrupt is not None:
                self.on_corrupt(bad)
        if history.corrupt and not history.finished:
            first = history.corrupt[0]
            raise QuarantinedTaskError(task_id, first.offset, first.seq, first.reason)
        return history.events

    def _release(self, task_id: str) -> None:
        if self.leases is not None:
            self.leases.release(task_id, self.owner)

    def _take_lease(self, task_id: str) -> Takeover | None:
        if self.leases is None:
            return None
        return self.leases.acquire(
            task_id, self.owner, stale_after_s=self.lease_stale_after_s, take_over=self.take_over
        )

    def _takeover_event(self, task_id: str, takeover: Takeover) -> TaskLeaseTakenOver:
        previous = takeover.previous
        return TaskLeaseTakenOver(
            task_id=task_id,
            correlation_id=task_id,
            owner=self.owner.id,
            previous_owner=previous.owner,
            previous_pid=previous.pid,
            previous_host=previous.host,
            previous_heartbeat_age_s=round(previous.age(time.time()), 3),
            reason=takeover.reason,
        )

    async def _heartbeat(
        self, task_id: str, lost: list[LeaseLostError], wake: asyncio.Event
    ) -> None:
        """Renew the lease on a timer (a third of the stale time), off the event path."""
        if self.leases is None:
            return
        while True:
            await asyncio.sleep(self.lease_stale_after_s / 3)
            if not self.leases.renew(task_id, self.owner):
                holder = self.leases.get(task_id)
                by = f" by {holder.owner}" if holder is not None else ""
                lost.append(
                    LeaseLostError(
                        f"task {task_id} was taken over{by}; this process stopped driving it"
                    )
                )
                wake.set()
                return

    async def _drain(self, driver: TaskDriver, wake: asyncio.Event) -> None:
        """After a stop request: let in-flight reactions finish within the grace, cut the
        rest short, and record what was left (``run_interrupted``)."""
        before = len(driver.inflight())
        deadline = time.monotonic() + self.grace_s
        while driver.busy and (left := deadline - time.monotonic()) > 0 and self.grace_s > 0:
            wake.clear()
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait(
                    {waiter, *driver.inflight()},
                    timeout=left,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
        cut_short = sorted(t.get_name() for t in driver.inflight())
        await driver.cancel()
        if driver.fatal is not None:
            raise driver.fatal
        if driver.state.terminal:
            return  # the task ended within the grace: nothing was left
        self.interrupted = RunInterrupted(
            task_id=driver.task_id,
            correlation_id=driver.task_id,
            signal=self._stop_signal or "SIGTERM",
            grace_s=self.grace_s,
            finished_in_grace=max(0, before - len(cut_short)),
            cut_short=cut_short,
        )
        await driver.emit([self.interrupted])
        if driver.fatal is not None:
            raise driver.fatal

    async def _decisions_since(self, host: TaskHost, seq: int) -> list[Event] | None:
        """Events appended to the task after ``seq`` by another process, taken in when they
        are all approval decisions (``None`` when another runner is writing the task)."""
        entries = await self.log.read_task(host.task_id, after_seq=seq)
        return host.take_in([e.event for e in entries if isinstance(e, Recorded)])
