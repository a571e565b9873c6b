"""Checking a SQLite ledger end to end (``agentledger doctor``).

Read-only: SQLite's own integrity check, every row decoded as the runners would read it,
seq contiguous within each task, no tool call with two outcomes, and the task leases. The
answer is a ``LedgerReport``: problems (the ledger or a task is damaged) and notes (worth
knowing, not damage).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agentledger.schemas import TERMINAL_TYPES, Event, ToolCallCompleted
from agentledger.streams.lease import Lease, SqliteLeases
from agentledger.streams.log import CorruptRecord, decode_row


@dataclass
class LedgerReport:
    path: Path
    events: int = 0
    tasks: int = 0
    checks: list[str] = field(default_factory=list)  # what was checked and passed
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)  # task -> first corrupt record

    @property
    def healthy(self) -> bool:
        return not self.problems


def check_ledger(path: Path, *, stale_after_s: float = 30.0) -> LedgerReport:
    """Check the ledger at ``path`` without writing to it."""
    report = LedgerReport(path)
    if not path.is_file():
        report.problems.append(f"no ledger at {path}")
        return report
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open {path}: {exc}")
        return report
    try:
        _check(db, report, stale_after_s)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"the ledger is not readable as SQLite: {exc}")
    finally:
        db.close()
    return report


def _check(db: sqlite3.Connection, report: LedgerReport, stale_after_s: float) -> None:
    result = [str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall()]
    if result == ["ok"]:
        report.checks.append("SQLite integrity check")
    else:
        report.problems.extend(f"integrity check: {line}" for line in result[:20])
    seqs: dict[str, list[int]] = defaultdict(list)
    by_task: dict[str, list[Event]] = defaultdict(list)
    bad = 0
    rows = db.execute(
        "SELECT offset, task_id, seq, data, type, occurred_at FROM events ORDER BY offset"
    )
    for offset, task_id, seq, data, type_, occurred_at in rows:
        report.events += 1
        task = str(task_id)
        if isinstance(seq, int):
            seqs[task].append(seq)
        entry = decode_row(offset, task, seq, data)
        if isinstance(entry, CorruptRecord):
            bad += 1
            where = f"offset {offset} (task {task}, seq {seq})"
            report.problems.append(f"{where}: {entry.reason}")
            report.quarantined.setdefault(task, f"{where}: {entry.reason}")
            continue
        event = entry.event
        by_task[task].append(event)
        if type_ != event.type:
            report.problems.append(
                f"offset {offset}: the type column says {type_!r}, the event is {event.type!r}"
            )
        if not _readable_time(occurred_at):
            report.problems.append(
                f"offset {offset}: occurred_at column {occurred_at!r} unreadable"
            )
    report.tasks = len(set(seqs) | set(by_task))
    if not bad:
        report.checks.append(f"every record decodes ({report.events})")
    for task, found in by_task.items():
        if any(e.type in TERMINAL_TYPES for e in found):
            report.quarantined.pop(task, None)  # finished: nothing will drive it again
    gaps = [_gap(task, sorted(s)) for task, s in seqs.items()]
    if not any(gaps):
        report.checks.append("seq contiguous from 1 in every task")
    report.problems.extend(g for g in gaps if g)
    twice = [p for task, events in by_task.items() for p in _outcomes(task, events)]
    if not twice:
        report.checks.append("every tool call has at most one outcome")
    report.problems.extend(twice)
    _leases(SqliteLeases(db).all(), by_task, report, stale_after_s)


def _readable_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _gap(task: str, seqs: list[int]) -> str | None:
    if seqs == list(range(1, len(seqs) + 1)):
        return None
    repeated = sorted(s for s, n in Counter(seqs).items() if n > 1)
    missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs))
    detail = []
    if missing:
        detail.append(f"missing {_short(missing)}")
    if repeated:
        detail.append(f"repeated {_short(repeated)}")
    if min(seqs) < 1:
        detail.append(f"starts at {min(seqs)}")
    return f"task {task}: seq not contiguous ({'; '.join(detail)})"


def _short(values: list[int]) -> str:
    return ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")


def _outcomes(task: str, events: list[Event]) -> list[str]:
    """A key executed more than once, or a start marker with more than one outcome."""
    executed = Counter(
        e.idempotency_key for e in events if isinstance(e, ToolCallCompleted) and not e.replayed
    )
    starts = {e.event_id for e in events if e.type == "tool_call_started"}
    outcome_types = {"tool_call_completed", "tool_call_failed", "tool_call_retry_scheduled"}
    per_start = Counter(
        e.causation_id for e in events if e.type in outcome_types and e.causation_id in starts
    )
    out = [
        f"task {task}: tool call {key} completed {n} times (executed more than once)"
        for key, n in executed.items()
        if n > 1
    ]
    out += [
        f"task {task}: tool_call_started {start} has {n} outcomes"
        for start, n in per_start.items()
        if n > 1
    ]
    return out


def _leases(
    leases: list[Lease], by_task: dict[str, list[Event]], report: LedgerReport, stale: float
) -> None:
    now = time.time()
    for lease in leases:
        state = lease.staleness(now, stale) or "live"
        line = (
            f"lease on task {lease.task_id}: {lease.owner} (pid {lease.pid} on {lease.host}), "
            f"heartbeat {lease.age(now):.0f}s ago — {state}"
        )
        events = by_task.get(lease.task_id)
        if events is None:
            line += "; no such task in this ledger"
        elif any(e.type in TERMINAL_TYPES for e in events) and state != "live":
            line += "; the task has ended (left by a process that stopped)"
        report.notes.append(line)
    if not leases:
        report.checks.append("no task leases held")
