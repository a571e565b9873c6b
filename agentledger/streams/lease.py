"""Task leases: one owner drives a task at a time (embedded shape).

A runner takes the task's lease in the ledger (owner id, pid, host, heartbeat) before it
dispatches anything, renews it on a timer (never per event) and gives it back when it
stops. Another process that finds a live lease refuses to drive the task
(``TaskLeasedError``), so it never turns the owner's in-flight calls into
``outcome_unknown``. A lease can be taken only once it is stale — its heartbeat older than
the setting, or its process gone from this host — or when the caller forces it
(``--take-over``); the takeover is recorded as ``task_lease_taken_over``.

    leases = SqliteLeases(connection)
    previous = leases.acquire(task_id, me, stale_after_s=30.0)   # raises TaskLeasedError
    leases.renew(task_id, me)                                    # False: it was taken over
    leases.release(task_id, me)
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentledger.errors import EventLogError, TaskLeasedError

LEASES_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    task_id      TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    acquired_at  REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);
"""

TakeoverReason = Literal["stale", "owner_gone", "forced"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who drives a task: ``host:pid:nonce`` (the nonce tells two runners of one pid apart)."""

    id: str
    pid: int
    host: str

    @classmethod
    def this_process(cls) -> Owner:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}:{pid}:{uuid.uuid4().hex[:8]}", pid, host)


@dataclass(frozen=True, slots=True)
class Lease:
    task_id: str
    owner: str
    pid: int
    host: str
    acquired_at: float
    heartbeat_at: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.heartbeat_at)

    def staleness(self, now: float, stale_after_s: float) -> TakeoverReason | None:
        """Why the lease may be taken without force, or None while it is live."""
        if self.host == socket.gethostname() and not process_alive(self.pid):
            return "owner_gone"
        if self.age(now) >= stale_after_s:
            return "stale"
        return None


@dataclass(frozen=True, slots=True)
class Takeover:
    previous: Lease
    reason: TakeoverReason


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        # the state follows the parenthesised command name; Z is a zombie (dead, unreaped)
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    return True


class SqliteLeases:
    """Leases in the ledger's own ``leases`` table, on the log's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def acquire(
        self, task_id: str, owner: Owner, *, stale_after_s: float, take_over: bool = False
    ) -> Takeover | None:
        """Take the task's lease; returns the lease taken over, if any.

        Raises TaskLeasedError when another owner's lease is live and ``take_over`` is off.
        """
        db = self._db
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(LEASES_SCHEMA)
                held = self._get(task_id)
                takeover: Takeover | None = None
                if held is not None and held.owner != owner.id:
                    reason = held.staleness(now, stale_after_s)
                    if reason is None and not take_over:
                        raise TaskLeasedError(
                            task_id, held.owner, held.pid, held.host, held.age(now)
                        )
                    takeover = Takeover(held, reason or "forced")
                db.execute(
                    "INSERT OR REPLACE INTO leases "
                    "(task_id, owner, pid, host, acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (task_id, owner.id, owner.pid, owner.host, now, now),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"cannot take the lease on task {task_id}: {exc}") from exc
        return takeover

    def renew(self, task_id: str, owner: Owner) -> bool:
        """Heartbeat. False when the lease is no longer ours (another process took it)."""
        try:
            cur = self._db.execute(
                "UPDATE leases SET heartbeat_at = ? WHERE task_id = ? AND owner = ?",
                (time.time(), task_id, owner.id),
            )
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"cannot renew the lease on task {task_id}: {exc}") from exc
        return cur.rowcount == 1

    def release(self, task_id: str, owner: Owner) -> None:
        with contextlib.suppress(sqlite3.DatabaseError):  # best effort: a stale lease expires
            self._db.execute(
                "DELETE FROM leases WHERE task_id = ? AND owner = ?", (task_id, owner.id)
            )

    def get(self, task_id: str) -> Lease | None:
        try:
            return self._get(task_id)
        except sqlite3.OperationalError:  # a ledger from before leases: no table, no lease
            return None

    def all(self) -> list[Lease]:
        try:
            rows = self._db.execute(
                "SELECT task_id, owner, pid, host, acquired_at, heartbeat_at FROM leases "
                "ORDER BY task_id"
            ).fetchall()
        except sqlite3.OperationalError:
            return []
        return [_lease(row) for row in rows]

    def _get(self, task_id: str) -> Lease | None:
        row = self._db.execute(
            "SELECT task_id, owner, pid, host, acquired_at, heartbeat_at FROM leases "
            "WHERE task_id = ?",
            (task_id,),
        ).fetchone()
        return None if row is None else _lease(row)


def _lease(row: tuple[object, ...]) -> Lease:
    task_id, owner, pid, host, acquired, beat = row
    return Lease(
        str(task_id),
        str(owner),
        pid if isinstance(pid, int) else -1,
        str(host),
        float(acquired) if isinstance(acquired, int | float) else 0.0,
        float(beat) if isinstance(beat, int | float) else 0.0,
    )
