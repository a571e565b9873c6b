"""SQLite EventLog: one durable, append-only file (``ledger.db``) in WAL mode.

WAL lets any number of readers (``agentledger events``, ``status``, the audit projection)
read while one process writes. Each batch is one transaction: all of it is stored or none.
``synchronous=FULL`` (the default) fsyncs every commit, so an acknowledged event survives a
power cut as well as a killed process; ``NORMAL`` survives a killed process only, and is
faster.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from agentledger.errors import EventLogError, LedgerReplacedError, SequenceConflictError
from agentledger.schemas import EventBase
from agentledger.schemas.codec import encode
from agentledger.security.masking import Masker, SqliteVault
from agentledger.security.private_files import private_dir, private_file
from agentledger.streams.lease import LEASES_SCHEMA, SqliteLeases
from agentledger.streams.log import (
    UNKNOWN_TIME,
    LogEntry,
    Recorded,
    TaskSummary,
    decode_row,
)
from agentledger.streams.write_guard import WriteGuard

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    offset       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL UNIQUE,
    task_id      TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    causation_id TEXT,
    occurred_at  TEXT    NOT NULL,
    data         BLOB    NOT NULL,
    UNIQUE (task_id, seq)
);
CREATE TABLE IF NOT EXISTS positions (
    consumer TEXT PRIMARY KEY,
    offset   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('format', '1');
"""

Synchronous = Literal["FULL", "NORMAL"]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _stored_time(value: object) -> datetime:
    """A stored ``occurred_at``, or UNKNOWN_TIME when the row holds something unreadable."""
    if not isinstance(value, str):
        return UNKNOWN_TIME
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return UNKNOWN_TIME


class SqliteEventLog:
    """Durable event log in one SQLite file. Use one instance per process."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        create: bool = True,
        busy_timeout_s: float = 30.0,
        guard: WriteGuard | None = None,
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise EventLogError(
                f"no ledger at {self.path}; check --db / AGENTLEDGER_HOME (a run creates it)"
            )
        # Masked on every append; by default the raw values go to vault.db beside the ledger.
        vault = self.path.parent / "vault.db"
        self.guard = guard if guard is not None else WriteGuard(Masker(lambda: SqliteVault(vault)))
        try:
            private_dir(self.path.parent)
        except OSError as exc:
            raise EventLogError(
                f"cannot create the ledger's folder {self.path.parent}: {exc}"
            ) from exc
        try:
            private_file(self.path)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone()
            if exists is None:  # readers of an existing ledger never take the write lock
                self._db.executescript(_SCHEMA + LEASES_SCHEMA)
            self._identity = _identity(self.path)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise EventLogError(f"cannot open event log {self.path}: {exc}") from exc

    @property
    def leases(self) -> SqliteLeases:
        """The task leases kept in this ledger (streams/lease.py)."""
        return SqliteLeases(self._db)

    def check_file(self) -> None:
        """Raise LedgerReplacedError if the ledger file was deleted or replaced since this
        process opened it: appends would go to a file no one will ever read again."""
        if _identity(self.path) != self._identity:
            raise LedgerReplacedError(
                f"the ledger {self.path} was deleted or replaced while this process used it "
                "(its inode changed); stopped rather than write into a file no one can read. "
                "Restore the file, then `agentledger resume` the task"
            )

    async def append(self, events: Sequence[EventBase]) -> list[Recorded]:
        events = self.guard(events)
        rows = [
            (
                e.event_id,
                e.task_id,
                e.seq,
                e.event_type,
                e.causation_id,
                e.occurred_at.isoformat(),
                encode(e),
            )
            for e in events
        ]
        db = self._db
        self.check_file()  # one stat per batch: cheap beside the commit (benchmarks/)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                offsets = [
                    db.execute(
                        "INSERT INTO events (event_id, task_id, seq, type, causation_id, "
                        "occurred_at, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING offset",
                        row,
                    ).fetchone()[0]
                    for row in rows
                ]
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            failing = self._conflict(events)
            if failing is not None:
                raise SequenceConflictError(failing.task_id, failing.seq) from exc
            raise EventLogError(f"append refused: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"append to {self.path} failed: {exc}") from exc
        return [Recorded(o, e) for o, e in zip(offsets, events, strict=True)]  # type: ignore[arg-type]

    def _conflict(self, events: Sequence[EventBase]) -> EventBase | None:
        seen: set[tuple[str, int]] = set()
        for e in events:  # a repeat inside the batch itself
            if (e.task_id, e.seq) in seen:
                return e
            seen.add((e.task_id, e.seq))
        for e in events:
            row = self._db.execute(
                "SELECT 1 FROM events WHERE task_id = ? AND seq = ?", (e.task_id, e.seq)
            ).fetchone()
            if row is not None:
                return e
        return None

    def insert_raw(self, task_id: str, seq: int, data: bytes, *, type_: str = "?") -> int:
        """Store arbitrary bytes as an event row. For tests that plant corrupt records."""
        cur = self._db.execute(
            "INSERT INTO events (event_id, task_id, seq, type, causation_id, occurred_at, data) "
            "VALUES (hex(randomblob(16)), ?, ?, ?, NULL, datetime('now'), ?) RETURNING offset",
            (task_id, seq, type_, data),
        )
        return int(cur.fetchone()[0])

    async def read_task(self, task_id: str, *, after_seq: int = 0) -> list[LogEntry]:
        rows = self._db.execute(
            "SELECT offset, task_id, seq, data FROM events WHERE task_id = ? AND seq > ? "
            "ORDER BY seq",
            (task_id, after_seq),
        ).fetchall()
        return [decode_row(*row) for row in rows]

    async def read_from(self, after: int = 0, *, limit: int | None = None) -> list[LogEntry]:
        rows = self._db.execute(
            "SELECT offset, task_id, seq, data FROM events WHERE offset > ? ORDER BY offset LIMIT ?",
            (after, -1 if limit is None else limit),
        ).fetchall()
        return [decode_row(*row) for row in rows]

    async def follow(
        self, after: int = 0, *, task_id: str | None = None, poll_interval: float = 0.05
    ) -> AsyncIterator[LogEntry]:
        position = after
        while True:
            if task_id is None:
                batch = await self.read_from(position, limit=1000)
            else:
                rows = self._db.execute(
                    "SELECT offset, task_id, seq, data FROM events WHERE offset > ? AND task_id = ? "
                    "ORDER BY offset LIMIT 1000",
                    (position, task_id),
                ).fetchall()
                batch = [decode_row(*row) for row in rows]
            for entry in batch:
                position = entry.offset
                yield entry
            if not batch:
                await asyncio.sleep(poll_interval)

    async def last_offset(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(offset), 0) FROM events").fetchone()
        return int(row[0])

    async def tasks(self, *, limit: int = 100) -> list[TaskSummary]:
        rows = self._db.execute(
            "SELECT task_id, COUNT(*), MIN(occurred_at), MAX(occurred_at), MAX(offset) "
            "FROM events GROUP BY task_id ORDER BY MAX(offset) DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for task_id, count, first, last, last_offset in rows:
            (last_type,) = self._db.execute(
                "SELECT type FROM events WHERE offset = ?", (last_offset,)
            ).fetchone()
            out.append(
                TaskSummary(task_id, count, _stored_time(first), _stored_time(last), str(last_type))
            )
        return out

    async def get_position(self, consumer: str) -> int:
        row = self._db.execute(
            "SELECT offset FROM positions WHERE consumer = ?", (consumer,)
        ).fetchone()
        return 0 if row is None else int(row[0])

    async def set_position(self, consumer: str, offset: int) -> None:
        self._db.execute(
            "INSERT INTO positions (consumer, offset) VALUES (?, ?) "
            "ON CONFLICT (consumer) DO UPDATE SET offset = excluded.offset",
            (consumer, offset),
        )

    async def close(self) -> None:
        self._db.close()
