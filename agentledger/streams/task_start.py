"""Where a task's history starts in its partition, found by time instead of by a scan.

A task's new owner (a rebalance, a restart) rebuilds it from its history. Reading the
task's partition from offset 0 costs as much as the partition holds; this module lets it
ask the broker for the first offset at the task's *start time* instead (ListOffsets by
timestamp, ``offsets_for_times``) and read only from there.

The start time is a function of the task id alone, so every reader and every writer agrees
on it without reading anything: agentledger's task ids are UUIDv7 (``new_event_id``), whose
first 48 bits are the millisecond the submitter minted the id, before the goal existed.

The rule that makes the lookup exact, whatever the producers' clocks say: every record of
a task is produced with the Kafka timestamp ``max(now, start)`` (``record_timestamp_ms``).
So every record of the task has a timestamp at or after ``start``, and the broker's answer
(the earliest offset whose timestamp is at or after ``start``) is at or before the task's
first record. Clock skew between producers only moves a record's timestamp *up* to the
start, never below it, so no margin is needed and no record is missed. It needs:

- the events topic keeps producer timestamps (``message.timestamp.type=CreateTime``, the
  Kafka default); with LogAppendTime the broker's clock decides, and the check below
  catches a history that lost its beginning;
- a start no further ahead of the broker's clock than it accepts
  (``message.timestamp.after.max.ms``, 1 hour by default on Kafka 4): the worker refuses a
  goal whose task id is dated more than ``MAX_START_AHEAD_MS`` ahead of its clock
  (``start_ahead_ms``), as a dead letter saying so.

Fallbacks to reading from offset 0 (the old cost, still correct): a task id that is not a
UUIDv7 (chosen by the caller), a broker that cannot answer by timestamp, and a history
found incomplete (``complete``: its seqs do not run gap-free from 1, as when its first
records were written by an older agentledger without the timestamp rule under skewed
clocks).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence

from agentledger.streams.log import LogEntry, Recorded

MAX_START_AHEAD_MS = 10 * 60 * 1000
"""How far a task id's time may be ahead of the worker's clock (10 min): records are
stamped at least at the start, and Kafka refuses timestamps over an hour ahead of its own."""


def task_start_ms(task_id: str) -> int | None:
    """The ms timestamp a UUIDv7 task id was minted at; None for any other id."""
    if len(task_id) != 36:
        return None
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        return None
    if parsed.version != 7 or parsed.variant != uuid.RFC_4122:
        return None
    return parsed.int >> 80


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def record_timestamp_ms(task_id: str, now: int | None = None) -> int | None:
    """The Kafka timestamp of a record of ``task_id``: never before the task's start
    (None: the producer's clock, for a task id that has no start)."""
    start = task_start_ms(task_id)
    if start is None:
        return None
    current = now_ms() if now is None else now
    return max(current, start)


def start_ahead_ms(task_id: str, now: int | None = None) -> int:
    """How many ms ``task_id``'s start is ahead of ``now`` (0 when it is not)."""
    start = task_start_ms(task_id)
    if start is None:
        return 0
    return max(0, start - (now_ms() if now is None else now))


def first_offset_at(timestamps: Sequence[int], start: int) -> int | None:
    """What the broker answers to ListOffsets by timestamp, over one partition's record
    timestamps in offset order: the earliest offset at or after ``start`` (None: none)."""
    return next((offset for offset, ts in enumerate(timestamps) if ts >= start), None)


def complete(entries: Iterable[LogEntry], after_seq: int = 0) -> bool:
    """Whether a history read from the task's start offset holds every seq past
    ``after_seq`` up to its last one (an empty history is complete: a task not started).
    Unstamped events (seq 0) and records without a seq do not count."""
    seqs = set()
    for entry in entries:
        seq = entry.event.seq if isinstance(entry, Recorded) else entry.seq
        if seq:
            seqs.add(seq)
    return not seqs or seqs == set(range(after_seq + 1, max(seqs) + 1))
