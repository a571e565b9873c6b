"""The memory index on disk: SQLite with the ``sqlite-vec`` extension, beside the ledger.

One file (default: beside the ledger, ``HOME/memory.db``) holds the memories (``items``), their vectors (a
``vec0`` table partitioned by namespace, so a search never crosses namespaces), the
episodes (one row per task), and the projection's position in the log. A batch of changes
and the position it brings the index to are written in one transaction, so a crash never
leaves the index ahead of or behind its position.

Python's own ``sqlite3`` is often built without extension loading; ``sqlean.py`` is the
same DB-API module with it enabled.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlean as sqlite3
import sqlite_vec

from agentledger.errors import ConfigurationError, RuntimeFailure


class MemoryStoreError(RuntimeFailure):
    """The memory index file cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class MemoryItem:
    namespace: str
    key: str
    text: str
    metadata: dict[str, Any]
    source: dict[str, Any]
    task_id: str
    event_id: str
    written_at: str
    score: float | None = None  # cosine similarity, for search hits

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "key": self.key,
            "text": self.text,
            "metadata": self.metadata,
            "task_id": self.task_id,
            "written_at": self.written_at,
        }
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out


@dataclass(frozen=True, slots=True)
class Upsert:
    namespace: str
    key: str
    text: str
    metadata: dict[str, Any]
    source: dict[str, Any]
    task_id: str
    event_id: str
    written_at: str
    vector: list[float]


@dataclass(frozen=True, slots=True)
class Erase:
    namespace: str
    key: str | None  # None: the whole namespace
    erased_at: str  # writes up to this time are forgotten; later ones are new memories


@dataclass(frozen=True, slots=True)
class EpisodeStarted:
    task_id: str
    workflow: str
    user: str
    session: str
    goal: str
    started_at: str


@dataclass(frozen=True, slots=True)
class EpisodeEnded:
    task_id: str
    status: str
    outcome: str
    ended_at: str


Change = Upsert | Erase | EpisodeStarted | EpisodeEnded

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    source     TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    written_at TEXT NOT NULL,
    UNIQUE (namespace, key)
);
CREATE TABLE IF NOT EXISTS episodes (
    task_id    TEXT PRIMARY KEY,
    workflow   TEXT NOT NULL,
    user       TEXT NOT NULL,
    session    TEXT NOT NULL,
    goal       TEXT NOT NULL,
    status     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_by_workflow ON episodes (workflow, started_at);
CREATE TABLE IF NOT EXISTS tombstones (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,   -- '' for the whole namespace
    erased_at  TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""


class MemoryStore:
    """The index file. Thread-safe for the short calls the projection and tools make.

    Changes commute: a write replaces a key only if it is newer (``written_at``, then
    ``event_id``), and an erasure leaves a tombstone that keeps out writes older than it.
    So the index is the same whatever order changes arrive in (Kafka partitions interleave
    freely) and however often one is re-delivered.
    """

    def __init__(self, path: str | Path, *, identity: str, dimensions: int) -> None:
        self.path = Path(path)
        self.identity = identity
        self.dimensions = dimensions
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db: Any = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.enable_load_extension(True)
            sqlite_vec.load(self._db)
            self._db.enable_load_extension(False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS vectors USING vec0("
                f"embedding float[{dimensions}] distance_metric=cosine, "
                "namespace text partition key)"
            )
        except sqlite3.Error as exc:
            raise MemoryStoreError(f"cannot open the memory index {self.path}: {exc}") from None
        stored = self._meta("embedder")
        if stored is None:
            self._set_meta("embedder", identity)
        elif stored != identity:
            raise ConfigurationError(
                f"the memory index {self.path} was built with embedder {stored!r}, not "
                f"{identity!r}: run `agentledger memory rebuild` to re-embed it from the log"
            )

    # -- position ---------------------------------------------------------------------
    def position(self) -> int:
        value = self._meta("position")
        return int(value) if value is not None else 0

    def apply(self, changes: Sequence[Change], *, expected: int, position: int) -> bool:
        """Apply ``changes`` and move the position from ``expected`` to ``position``, in one
        transaction. False (nothing applied) when another writer moved the position first."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if self.position() != expected:
                        self._db.execute("ROLLBACK")
                        return False
                    for change in changes:
                        self._apply(change)
                    self._set_meta("position", str(position))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise MemoryStoreError(
                    f"cannot write the memory index {self.path}: {exc}"
                ) from None
        return True

    def apply_tracked(self, changes: Sequence[Change], positions: Mapping[str, int]) -> None:
        """Apply ``changes`` and store ``positions`` (e.g. a Kafka partition's next offset,
        by name) in one transaction: the positions never run ahead of the index."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for change in changes:
                        self._apply(change)
                    for name, offset in positions.items():
                        self._set_meta(f"position:{name}", str(offset))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise MemoryStoreError(
                    f"cannot write the memory index {self.path}: {exc}"
                ) from None

    def tracked_positions(self, prefix: str) -> dict[str, int]:
        """Positions stored by ``apply_tracked`` whose name starts with ``prefix``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM meta WHERE key LIKE ?", (f"position:{prefix}%",)
            ).fetchall()
        return {str(k).removeprefix("position:"): int(v) for k, v in rows}

    def _apply(self, change: Change) -> None:
        db = self._db
        match change:
            case Upsert():
                current = db.execute(
                    "SELECT written_at, event_id FROM items WHERE namespace = ? AND key = ?",
                    (change.namespace, change.key),
                ).fetchone()
                if current is not None and tuple(current) >= (change.written_at, change.event_id):
                    return  # a newer write of this key is already there (or this very one)
                erased = db.execute(
                    "SELECT 1 FROM tombstones WHERE namespace = ? AND key IN (?, '') "
                    "AND erased_at >= ?",
                    (change.namespace, change.key, change.written_at),
                ).fetchone()
                if erased is not None:
                    return  # forgotten by an erasure made after it was written
                self._delete("namespace = ? AND key = ?", (change.namespace, change.key))
                cur = db.execute(
                    "INSERT INTO items (namespace, key, text, metadata, source, task_id, "
                    "event_id, written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        change.namespace,
                        change.key,
                        change.text,
                        orjson.dumps(change.metadata).decode(),
                        orjson.dumps(change.source).decode(),
                        change.task_id,
                        change.event_id,
                        change.written_at,
                    ),
                )
                db.execute(
                    "INSERT INTO vectors (rowid, embedding, namespace) VALUES (?, ?, ?)",
                    (cur.lastrowid, sqlite_vec.serialize_float32(change.vector), change.namespace),
                )
            case Erase():
                where = "namespace = ? AND written_at <= ?"
                if change.key is not None:
                    where += " AND key = ?"
                self._delete(
                    where,
                    (change.namespace, change.erased_at, change.key)
                    if change.key is not None
                    else (change.namespace, change.erased_at),
                )
                db.execute(
                    "INSERT INTO tombstones VALUES (?, ?, ?) ON CONFLICT (namespace, key) "
                    "DO UPDATE SET erased_at = max(erased_at, excluded.erased_at)",
                    (change.namespace, change.key or "", change.erased_at),
                )
            case EpisodeStarted():
                db.execute(  # a re-delivered start never resets an ended episode
                    "INSERT OR IGNORE INTO episodes VALUES (?, ?, ?, ?, ?, 'running', '', ?, '')",
                    (
                        change.task_id,
                        change.workflow,
                        change.user,
                        change.session,
                        change.goal,
                        change.started_at,
                    ),
                )
            case EpisodeEnded():
                db.execute(
                    "UPDATE episodes SET status = ?, outcome = ?, ended_at = ? WHERE task_id = ?",
                    (change.status, change.outcome, change.ended_at, change.task_id),
                )

    def _delete(self, where: str, params: tuple[Any, ...]) -> None:
        ids = [r[0] for r in self._db.execute(f"SELECT id FROM items WHERE {where}", params)]
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM vectors WHERE rowid IN ({marks})", chunk)
            self._db.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)

    # -- reads ------------------------------------------------------------------------
    def search(self, namespace: str, vector: Sequence[float], top_k: int) -> list[MemoryItem]:
        with self._lock:
            hits = self._db.execute(
                "SELECT rowid, distance FROM vectors WHERE embedding MATCH ? AND k = ? "
                "AND namespace = ? ORDER BY distance",
                (sqlite_vec.serialize_float32(list(vector)), top_k, namespace),
            ).fetchall()
            out: list[MemoryItem] = []
            for rowid, distance in hits:
                row = self._db.execute(
                    f"SELECT {_ITEM} FROM items WHERE id = ?", (rowid,)
                ).fetchone()
                if row is not None:
                    out.append(_item(row, score=1.0 - float(distance)))
        return out

    def items(self, namespace: str | None = None, *, limit: int = 100) -> list[MemoryItem]:
        sql = f"SELECT {_ITEM} FROM items"
        params: tuple[Any, ...] = ()
        if namespace is not None:
            sql += " WHERE namespace = ?"
            params = (namespace,)
        sql += " ORDER BY namespace, key LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [_item(r) for r in rows]

    def namespaces(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, count(*) FROM items GROUP BY namespace ORDER BY namespace"
            ).fetchall()
        return {str(ns): int(n) for ns, n in rows}

    def episode(self, task_id: str) -> dict[str, str] | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_EPISODE} FROM episodes WHERE task_id = ?", (task_id,)
            ).fetchone()
        return None if row is None else dict(zip(_EPISODE_KEYS, map(str, row), strict=True))

    def episodes(
        self,
        *,
        workflow: str | None = None,
        user: str | None = None,
        session: str | None = None,
        exclude_task: str | None = None,
        before: str | None = None,
        limit: int = 10,
    ) -> list[dict[str, str]]:
        where, params = ["1 = 1"], []
        for column, value in (("workflow", workflow), ("user", user), ("session", session)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if exclude_task is not None:
            where.append("task_id != ?")
            params.append(exclude_task)
        if before is not None:  # ISO-8601 UTC: text order is time order
            where.append("started_at <= ?")
            params.append(before)
        sql = (
            f"SELECT {_EPISODE} FROM episodes WHERE {' AND '.join(where)} "
            "ORDER BY started_at DESC, task_id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [dict(zip(_EPISODE_KEYS, map(str, r), strict=True)) for r in rows]

    # -- maintenance ------------------------------------------------------------------
    @classmethod
    def recreate(cls, path: str | Path, *, identity: str, dimensions: int) -> MemoryStore:
        """Delete the index file and start an empty one (its position 0): a rebuild then
        replays the log, with whatever embedder is configured now."""
        path = Path(path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return cls(path, identity=identity, dimensions=dimensions)

    @property
    def is_open(self) -> bool:
        return not self._closed

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._db.close()
                self._closed = True

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


_EPISODE_KEYS = (
    "task_id",
    "workflow",
    "user",
    "session",
    "goal",
    "status",
    "outcome",
    "started_at",
    "ended_at",
)
_EPISODE = ", ".join(_EPISODE_KEYS)
_ITEM = "namespace, key, text, metadata, source, task_id, event_id, written_at"


def _item(row: Sequence[Any], *, score: float | None = None) -> MemoryItem:
    return MemoryItem(
        namespace=row[0],
        key=row[1],
        text=row[2],
        metadata=orjson.loads(row[3]),
        source=orjson.loads(row[4]),
        task_id=row[5],
        event_id=row[6],
        written_at=row[7],
        score=score,
    )


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]
