"""Export spans from a log: one task, the tasks started since a date, or live as events arrive.

The live exporter keeps its position in the log (``get_position``/``set_position`` under
the consumer name ``otel-export``): on start it re-reads what it already exported to
rebuild the spans still open, without sending them again, then follows the log.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from agentledger.otel.export import SpanSender
from agentledger.otel.spans import SpanProjector, SpanRecord, spans_of
from agentledger.schemas import Event, GoalSubmitted
from agentledger.streams.log import EventLog, Recorded, task_events

CONSUMER = "otel-export"


async def export_task(log: EventLog, task_id: str, sender: SpanSender, *, content: bool) -> int:
    events = await task_events(log, task_id)
    spans = spans_of([e for e in events if e.seq], content=content)
    await asyncio.to_thread(sender.send, spans)
    return len(spans)


async def export_since(
    log: EventLog, since: datetime, sender: SpanSender, *, content: bool
) -> tuple[int, int]:
    """Spans of every task whose goal was submitted at or after ``since``: (tasks, spans)."""
    started: set[str] = set()
    events: list[Event] = []
    for entry in await log.read_from(0):
        if not isinstance(entry, Recorded) or not entry.event.seq:
            continue
        e = entry.event
        if isinstance(e, GoalSubmitted) and e.occurred_at >= since:
            started.add(e.task_id)
        if e.task_id in started:
            events.append(e)
    spans = spans_of(events, content=content)
    await asyncio.to_thread(sender.send, spans)
    return len(started), len(spans)


async def follow(
    log: EventLog,
    sender: SpanSender,
    *,
    content: bool,
    from_start: bool = False,
    stop: asyncio.Event | None = None,
    poll_interval: float = 0.2,
    consumer: str = CONSUMER,
) -> int:
    """Export spans as their events are appended, until ``stop`` is set; returns spans sent."""
    projector = SpanProjector(content=content)
    history = await log.read_from(0)
    # Where to go on from: the stored position; on a first start, the end of the log (only
    # new events) unless ``from_start``.
    stored = await log.get_position(consumer)
    end = history[-1].offset if history else 0
    position = 0 if from_start else (stored or end)
    for entry in history:  # rebuild the spans still open, sending nothing
        if entry.offset > position:
            break
        if isinstance(entry, Recorded) and entry.event.seq:
            projector.take(entry.event)
    sent = 0
    stop = stop or asyncio.Event()
    stream = log.follow(position, poll_interval=poll_interval)
    while not stop.is_set():
        pending: list[SpanRecord] = []
        last = position
        next_entry = asyncio.ensure_future(anext(stream))
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({next_entry, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if next_entry not in done:
            next_entry.cancel()
            break
        stopping.cancel()
        entry = next_entry.result()
        last = entry.offset
        if isinstance(entry, Recorded) and entry.event.seq:
            pending += projector.take(entry.event)
        if pending:
            await asyncio.to_thread(sender.send, pending)
            sent += len(pending)
        position = last
        await log.set_position(consumer, position)
    return sent
