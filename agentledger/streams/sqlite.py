"""SQLite EventLog: one durable, append-only file (``ledger.db``) in WAL mode.

WAL lets any number of readers (``agentledger events``, ``status``, the audit projection)
read while one process writes. Each batch is one transaction: all of it is stored or none.
``synchronous=FULL`` (the default) fsyncs every commit, so an acknowledged event survives a
power cut as well as a killed process; ``NORMAL`` survives a killed process only, and is
faster.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from agentledger.errors import EventLogError, SequenceConflictError
from agentledger.schemas import EventBase
from agentledger.schemas.codec import encode
from agentledger.security.masking import Masker, SqliteVault
from agentledger.security.private_files import private_dir, private_file
from agentledger.streams.log import LogEntry, Recorded, TaskSummary, decode_entry
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


class SqliteEventLog:
    """Durable event log in one SQLite file. Use one instance per process."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        guard: WriteGuard | None = None,
    ) -> None:
        self.path = Path(path)
        # Masked on every append; by default the raw values go to vault.db beside the ledger.
        vault = self.path.parent / "vault.db"
        self.guard = guard if guard is not None else WriteGuard(Masker(lambda: SqliteVault(vault)))
        try:
            private_file(private_dir(self.path.parent) / self.path.name)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA busy_timeout=30000")
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone()
            if exists is None:  # readers of an existing ledger never take the write lock
                self._db.executescript(_SCHEMA)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise EventLogError(f"cannot open event log {self.path}: {exc}") from exc

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
        return [decode_entry(*row) for row in rows]

    async def read_from(self, after: int = 0, *, limit: int | None = None) -> list[LogEntry]:
        rows = self._db.execute(
            "SELECT offset, task_id, seq, data FROM events WHERE offset > ? ORDER BY offset LIMIT ?",
            (after, -1 if limit is None else limit),
        ).fetchall()
        return [decode_entry(*row) for row in rows]

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
                batch = [decode_entry(*row) for row in rows]
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
                TaskSummary(
                    task_id,
                    count,
                    datetime.fromisoformat(first),
                    datetime.fromisoformat(last),
                    last_type,
                )
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
