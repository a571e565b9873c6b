"""TaskDriver: the transport-agnostic heart of both runners.

It folds one task's events in log order into ``TaskState`` and hands each event, with the
state as of that event, to the processor that reacts to it. Reactions run concurrently
(an LLM call does not hold up a tool call of another subtask); their output is stamped
with the next ``seq`` and handed to ``sink`` (the log append), one batch at a time.
Runners hold it through ``task_host.TaskHost``, which adds the task's lifecycle around it.

Crash safety comes from the log alone. An event whose id is already some event's
``causation_id`` was handled (a reaction's output is one atomic batch), so after a restart
the driver re-dispatches the whole history and skips exactly those. Events in the log
before the restart are dispatched with ``recovering=True`` so the tool executor can tell
a side effect cut short by the crash from one it is about to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from agentledger.agents.approvals import ApprovalGate
from agentledger.agents.context import Processor, ProcessorContext, Runtime
from agentledger.agents.orchestrator import Orchestrator
from agentledger.agents.step import AgentStep
from agentledger.agents.tool_executor import ToolExecutor
from agentledger.errors import EventLogError
from agentledger.projections.task_state import TaskState, evolve
from agentledger.schemas import Event, EventBase, TaskFailed
from agentledger.security.guard import protect

log = logging.getLogger(__name__)

Sink = Callable[[list[EventBase]], Awaitable[None]]


def default_processors() -> list[Processor]:
    executor = ToolExecutor()
    return [Orchestrator(), AgentStep(), executor, ApprovalGate(executor)]


def processor_routes(processors: Iterable[Processor]) -> dict[str, Processor]:
    """The one processor that reacts to each event type."""
    routes: dict[str, Processor] = {}
    for p in processors:
        for event_type in p.handles:
            if event_type in routes:
                raise ValueError(
                    f"two processors handle {event_type!r}; one reaction per event type"
                )
            routes[event_type] = p
    return routes


async def react(processor: Processor, event: Event, ctx: ProcessorContext) -> list[EventBase]:
    """The events ``processor`` causes from ``event``; a bug in it becomes ``task_failed``
    (the task fails visibly instead of hanging). Shared by the driver and ``verify``."""
    try:
        return await processor.handle(event, ctx)
    except Exception as exc:
        log.exception(
            "%s failed on %s (task %s, seq %d)",
            type(processor).__name__,
            event.type,
            event.task_id,
            event.seq,
        )
        return [
            TaskFailed.caused_by(
                event,
                reason=f"internal error in {type(processor).__name__} handling {event.type} "
                f"(seq {event.seq}): {type(exc).__name__}: {exc}",
                error_kind="internal_error",
            )
        ]


class TaskDriver:
    def __init__(
        self,
        runtime: Runtime,
        task_id: str,
        sink: Sink,
        *,
        processors: Iterable[Processor] | None = None,
    ) -> None:
        self.runtime = runtime
        self.task_id = task_id
        self.state = TaskState(task_id=task_id)
        self._sink = sink
        self._routes = processor_routes(
            processors if processors is not None else default_processors()
        )
        self._caused: set[str] = set()
        self._next_seq = 1
        self._recover_until = 0
        self._lock = asyncio.Lock()
        self._inflight: set[asyncio.Task[None]] = set()
        self.fatal: BaseException | None = None

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def busy(self) -> bool:
        return bool(self._inflight)

    def handled(self, event_id: str) -> bool:
        """Whether some event recorded for this task names ``event_id`` as its cause."""
        return event_id in self._caused

    def load(self, history: Sequence[Event]) -> None:
        """Learn what the log already holds, before re-dispatching it."""
        for e in history:
            if e.causation_id:
                self._caused.add(e.causation_id)
            self._next_seq = max(self._next_seq, e.seq + 1)
            self._recover_until = max(self._recover_until, e.seq)

    def note_appended(self, events: Iterable[EventBase]) -> None:
        """Record events another writer appended for this task (distributed shape)."""
        for e in events:
            if e.causation_id:
                self._caused.add(e.causation_id)
            self._next_seq = max(self._next_seq, e.seq + 1)

    def dispatch(self, event: Event) -> asyncio.Task[None] | None:
        """Fold ``event`` and start its reaction (unless it was already handled); return
        the reaction started, if any."""
        self.state = evolve(self.state, event)
        if event.event_id in self._caused:
            return None
        processor = self._routes.get(event.type)
        if processor is None:
            return None
        ctx = ProcessorContext(
            self.state, self.runtime, recovering=event.seq <= self._recover_until
        )
        task = asyncio.create_task(
            self._react(processor, event, ctx), name=f"{event.type}#{event.seq}"
        )
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def _react(self, processor: Processor, event: Event, ctx: ProcessorContext) -> None:
        outputs = await react(processor, event, ctx)
        if outputs:
            try:
                await self.emit(outputs)
            except EventLogError:
                return  # recorded in self.fatal; the runner stops and reports it

    def emit_later(self, events: list[EventBase]) -> asyncio.Task[None]:
        """``emit`` as an in-flight task, for events made outside any reaction (a worker's
        expiry timer, another writer's decision being stamped): ``busy``, ``inflight`` and
        ``cancel`` count it like a reaction, and a failed append ends up in ``fatal``."""

        async def emit() -> None:
            with contextlib.suppress(EventLogError):  # recorded in self.fatal
                await self.emit(events)

        task = asyncio.create_task(emit(), name=f"emit {events[0].event_type}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    def inflight(self) -> set[asyncio.Task[None]]:
        return set(self._inflight)

    async def emit(self, events: list[EventBase]) -> None:
        """Stamp ``seq`` and hand the batch to the sink, one batch at a time."""
        async with self._lock:
            if self.state.terminal:
                return  # the task ended while this reaction ran; its output no longer matters
            stamped = [
                e.model_copy(update={"seq": self._next_seq + i}) for i, e in enumerate(events)
            ]
            try:
                # The outbound check; the log's write guard masks on append, and the
                # events that come back from the log are the masked ones.
                stamped = protect(stamped, self.runtime)
                await self._sink(stamped)
            except EventLogError as exc:
                self.fatal = exc
                raise
            except ValueError as exc:  # e.g. an event over the size limit: fail the task clearly
                cause = events[0]
                failed = TaskFailed(
                    task_id=self.task_id,
                    seq=self._next_seq,
                    causation_id=cause.causation_id,
                    correlation_id=cause.correlation_id,
                    agent=cause.agent,
                    reason=f"could not record {cause.event_type}: {exc}",
                    error_kind="unrecordable_event",
                )
                stamped = protect([failed], self.runtime)
                await self._sink(stamped)
            # max, not +=: on Kafka our own events may be noted back while the sink awaits
            self._next_seq = max(self._next_seq, stamped[-1].seq + 1)
            for e in stamped:
                if e.causation_id:
                    self._caused.add(e.causation_id)

    async def wait_idle(self) -> None:
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    async def cancel(self) -> None:
        for t in list(self._inflight):
            t.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight))
