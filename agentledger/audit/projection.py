"""The audit projection: the event log, folded into the ClickHouse audit table.

``AuditProjection(log, store).catch_up()`` reads the log from its tracked position, writes
rows in batches, and advances the position after each batch. Stop it anywhere and it
resumes; ``rebuild()`` starts again from offset 0.

Where the position lives: in ClickHouse (``audit_positions``), next to the rows it covers,
not in the log's ``positions`` table. Reasons:

* a new or wiped audit store starts from 0 by itself; a position kept in the ledger would
  claim rows that are no longer there;
* catching up never writes to the SQLite ledger, so it never takes the write lock a
  running task needs: reading a WAL database does not block its writer;
* one ClickHouse server can hold the audit of several ledgers, each under its own
  ``source`` name.

The order is rows first, position second. A crash between the two re-sends the batch on
resume, which the table absorbs (``audit_events`` shows each event once), so no event is
ever lost and none is counted twice.

Distributed shape: ``AuditKafkaProjector`` is a consumer group on the events topic. Its
members share the partitions, write each polled batch and then commit the Kafka offsets,
so the group's committed offsets are its position; records re-delivered after a crash or a
rebalance are absorbed the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agentledger.audit.erasure import apply_erasures
from agentledger.audit.rows import AuditRow, corrupt_row, to_row, workflow_of
from agentledger.audit.store import AuditStore
from agentledger.schemas import EventBase
from agentledger.streams.log import (
    CorruptRecord,
    EventLog,
    LogEntry,
    Recorded,
    decode_entry,
    events_of,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_GROUP",
    "DEFAULT_SOURCE",
    "AuditKafkaProjector",
    "AuditProjection",
    "AuditWriter",
]

DEFAULT_SOURCE = "ledger"
DEFAULT_BATCH_SIZE = 5000
DEFAULT_GROUP = "agentledger.audit"

# Enough tasks to cover every run that is still active; older ones are looked up again in
# the store if a late event of theirs turns up.
_WORKFLOW_CACHE_LIMIT = 100_000


class AuditWriter:
    """Turns events into audit rows and writes them, resolving each task's workflow.

    The workflow name is only on a task's ``GoalSubmitted``; later events of the task get
    it from this writer's map, which is rebuilt on demand from the goals already stored.
    """

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self._workflows: dict[str, str] = {}
        self._last_time = datetime(1970, 1, 1, tzinfo=UTC)

    def rows_for(self, entries: Sequence[LogEntry]) -> list[AuditRow]:
        """The rows of a batch of log entries (corrupt records become ``corrupt_record`` rows)."""
        events = events_of(entries)
        self._learn(events)
        if events and self._last_time.year == 1970:
            # A corrupt record has no trustworthy time of its own; borrow its neighbour's.
            self._last_time = events[0].occurred_at
        rows: list[AuditRow] = []
        for entry in entries:
            if isinstance(entry, Recorded):
                event = entry.event
                self._last_time = event.occurred_at
                rows.append(to_row(event, workflow=self._workflows.get(event.task_id, "")))
            elif isinstance(entry, CorruptRecord):
                rows.append(
                    corrupt_row(
                        entry.offset,
                        entry.task_id,
                        entry.seq,
                        entry.reason,
                        entry.data,
                        fallback=self._last_time,
                    )
                )
        return rows

    def write_events(self, events: Sequence[EventBase]) -> int:
        """Write a batch of events (e.g. one Kafka poll). Safe to call again with the same
        events. Returns the number of rows written."""
        self._learn(events)
        rows = [to_row(e, workflow=self._workflows.get(e.task_id, "")) for e in events]
        return self.store.insert_rows(rows)

    def forget(self) -> None:
        """Drop the task -> workflow map (it is rebuilt from the store as needed)."""
        self._workflows.clear()

    def _learn(self, events: Sequence[EventBase]) -> None:
        if len(self._workflows) > _WORKFLOW_CACHE_LIMIT:
            self._workflows.clear()
        missing: set[str] = set()
        for event in events:
            name = workflow_of(event)
            if name is not None:
                self._workflows[event.task_id] = name
            elif event.task_id not in self._workflows:
                missing.add(event.task_id)
        if missing:
            found = self.store.workflows_of(missing)
            self._workflows.update(found)
            # Remember tasks without a stored goal too, so they are not looked up per batch.
            self._workflows.update({task: "" for task in missing - found.keys()})


class AuditProjection:
    """Keeps the audit table of ``store`` up to date with ``log``.

    >>> projection = AuditProjection(SqliteEventLog("ledger.db"), store)
    >>> written = await projection.catch_up()

    ClickHouse calls run in a worker thread, so a catch-up inside a busy event loop does
    not stall the other tasks of that loop.
    """

    def __init__(self, log: EventLog, store: AuditStore, *, source: str = DEFAULT_SOURCE) -> None:
        self.log = log
        self.store = store
        self.source = source
        self.writer = AuditWriter(store)

    async def position(self) -> int:
        """The log offset up to which the audit table is written."""
        return await asyncio.to_thread(self.store.get_position, self.source)

    async def catch_up(self, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Write every event appended since the tracked position; return how many rows.

        It stops at the log's end as it was when called, so a log that keeps growing does
        not keep it running; call again for the rest.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        position = await self.position()
        end = await self.log.last_offset()
        written = 0
        while position < end:
            entries = await self.log.read_from(position, limit=min(batch_size, end - position))
            if not entries:
                break
            rows = await asyncio.to_thread(self.writer.rows_for, entries)
            written += await asyncio.to_thread(self.store.insert_rows, rows)
            events = events_of(entries)
            await asyncio.to_thread(apply_erasures, self.store, events)  # memory forgotten
            position = entries[-1].offset
            await asyncio.to_thread(self.store.set_position, self.source, position)
        return written

    async def rebuild(self, batch_size: int = DEFAULT_BATCH_SIZE, *, truncate: bool = False) -> int:
        """Write the whole log again from offset 0.

        Rewritten rows replace the stored ones (the newest write of an event wins), so a
        rebuild picks up changes to row mapping or masking. ``truncate=True`` empties the
        table first; only do that when this store holds no other source's audit.
        """
        if truncate:
            await asyncio.to_thread(self.store.truncate)
        await asyncio.to_thread(self.store.set_position, self.source, 0)
        self.writer.forget()
        return await self.catch_up(batch_size)


class AuditKafkaProjector:
    """The audit projection of the distributed shape: a Kafka consumer group on the events
    topic (``<prefix>.events``), writing to ``store`` (usually a ClickHouse server).

    Start as many members as the topic has partitions, in any processes, with one
    ``group_id``; Kafka shares the partitions among them. Offsets are committed after the
    batch's rows are written, so a crash re-delivers at most one batch, which the table
    absorbs.

    >>> await AuditKafkaProjector(store, "kafka:9092").run(stop=stop_event)
    """

    def __init__(
        self,
        store: AuditStore,
        bootstrap: str,
        *,
        topic: str = "agentledger.events",
        group_id: str = DEFAULT_GROUP,
        batch_size: int = DEFAULT_BATCH_SIZE,
        session_timeout_ms: int = 10_000,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.batch_size = batch_size
        self.writer = AuditWriter(store)
        self._consumer_options = {
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": max(100, session_timeout_ms // 4),
            "fetch_max_wait_ms": fetch_max_wait_ms,
        }

    async def run(self, *, stop: asyncio.Event | None = None, until_caught_up: bool = False) -> int:
        """Consume and write until ``stop`` is set (or, with ``until_caught_up``, until this
        member's partitions hold nothing unread). Returns the rows written."""
        # Only the distributed shape needs Kafka.
        from agentledger.streams.kafka_clients import record_consumer

        consumer = record_consumer(
            self.bootstrap,
            self.topic,
            group_id=self.group_id,
            client_id=f"{self.group_id}.projector",
            auto_offset_reset="earliest",
            **self._consumer_options,
        )
        await consumer.start()
        written = 0
        try:
            while stop is None or not stop.is_set():
                polled = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                entries = [
                    decode_entry(
                        # The EventLog offset encoding of the Kafka backend.
                        (tp.partition << 40) | (message.offset + 1),
                        (message.key or b"").decode(errors="replace"),
                        None,
                        message.value or b"",
                    )
                    for tp, messages in polled.items()
                    for message in messages
                ]
                if entries:
                    rows = await asyncio.to_thread(self.writer.rows_for, entries)
                    written += await asyncio.to_thread(self.store.insert_rows, rows)
                    events = events_of(entries)
                    await asyncio.to_thread(apply_erasures, self.store, events)
                    await consumer.commit()
                elif until_caught_up and await self._caught_up(consumer):
                    break
        finally:
            await consumer.stop()
        return written

    @staticmethod
    async def _caught_up(consumer: Any) -> bool:
        assigned = consumer.assignment()
        if not assigned:
            return False  # still joining the group
        for tp in assigned:
            end = consumer.highwater(tp)
            if end is None or await consumer.position(tp) < end:
                return False
        return True
