"""AuditStore: the audit table in ClickHouse, through one clickhouse-connect client.

Two shapes, one API::

    store = AuditStore.connect("chdb:///home/me/.agentledger/audit.chdb")  # in-process engine
    store = AuditStore.connect("http://default:secret@localhost:8123/agentledger")  # a server
    store.init()
    store.insert_rows(rows)
    store.query("SELECT count() FROM audit_events")

The embedded engine (chdb) allows one data directory per process and one process per data
directory. Several stores in one process may share a directory (they share the engine);
a second *process* on the same directory gets ``AuditStoreBusyError`` with a message that
says who holds it, instead of the engine's own failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentledger.audit.rows import AUDIT_COLUMNS, AuditRow
from agentledger.errors import ConfigurationError, RuntimeFailure, UsageError

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_RETENTION_DAYS",
    "AuditQueryError",
    "AuditStore",
    "AuditStoreBusyError",
    "Table",
]

DEFAULT_DATABASE = "agentledger"
DEFAULT_RETENTION_DAYS = 365
"""How long audit rows are kept unless ``init(retention_days=...)`` says otherwise."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCK_NAME = ".agentledger.lock"

# Column types of audit_log, as in schema.sql; giving them to inserts spares a DESCRIBE
# round trip per batch. tests/integration/test_audit_chdb.py checks they match the table.
COLUMN_TYPES: dict[str, str] = {
    "event_id": "String",
    "task_id": "String",
    "seq": "UInt32",
    "type": "LowCardinality(String)",
    "agent": "LowCardinality(String)",
    "workflow": "LowCardinality(String)",
    "subtask_id": "String",
    "model": "LowCardinality(String)",
    "provider": "LowCardinality(String)",
    "tool": "LowCardinality(String)",
    "status": "LowCardinality(String)",
    "error_kind": "LowCardinality(String)",
    "input_tokens": "UInt64",
    "output_tokens": "UInt64",
    "cached_tokens": "UInt64",
    "cost_usd": "Float64",
    "latency_ms": "Float64",
    "occurred_at": "DateTime64(6, 'UTC')",
    "causation_id": "String",
    "correlation_id": "String",
    "payload": "String",
}


class AuditStoreBusyError(RuntimeFailure):
    """Another process has the embedded audit store's directory open."""


class AuditQueryError(UsageError):
    """ClickHouse refused a query or statement; the message carries its reason."""


@dataclass(frozen=True, slots=True)
class Table:
    """A query result: column names and rows of Python values."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class _DirectoryLock:
    """An advisory lock per chdb directory, held by this process while any store uses it.

    flock locks belong to an open file, so two stores of one process would lock each other
    out; a reference count per directory lets them share the one lock.
    """

    _held: dict[Path, tuple[int, int]] = {}
    _guard = threading.Lock()

    @classmethod
    def acquire(cls, directory: Path, timeout: float) -> None:
        with cls._guard:
            if directory in cls._held:
                fd, count = cls._held[directory]
                cls._held[directory] = (fd, count + 1)
                return
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / _LOCK_NAME
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                        os.close(fd)
                        raise AuditStoreBusyError(
                            f"the audit store {directory} is in use by another process "
                            f"(pid {holder}); the embedded ClickHouse engine allows one process "
                            "per directory. Wait for it to finish and retry, or point "
                            "--clickhouse / AGENTLEDGER_CLICKHOUSE_URL at a ClickHouse server"
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            cls._held[directory] = (fd, 1)

    @classmethod
    def release(cls, directory: Path) -> None:
        with cls._guard:
            fd, count = cls._held[directory]
            if count > 1:
                cls._held[directory] = (fd, count - 1)
                return
            del cls._held[directory]
            os.close(fd)  # closing the file releases the flock


def _identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(
            f"{what} {name!r} is not a plain ClickHouse identifier (letters, digits, '_')"
        )
    return name


class AuditStore:
    """The audit table and its queries over one clickhouse-connect client.

    Use ``AuditStore.connect(url)``; close it (or use it as a context manager) so the
    embedded engine and its directory are released.
    """

    def __init__(
        self, client: Client, *, database: str, location: str, lock: Path | None = None
    ) -> None:
        self.client = client
        self.database = _identifier(database, "database")
        self.location = location
        self._lock = lock
        self._closed = False
        self._last_version = 0

    @classmethod
    def connect(
        cls, url: str, *, database: str | None = None, lock_timeout: float = 5.0
    ) -> AuditStore:
        """Open ``chdb:///abs/dir``, ``chdb://memory`` or ``http(s)://user:pass@host:port/db``.

        The database is, in order: ``database``, the URL's path (http) or ``?database=``
        query parameter, else ``agentledger``. Raises ``AuditStoreBusyError`` when another
        process holds the chdb directory for longer than ``lock_timeout`` seconds.
        """
        parsed = urlparse(url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if parsed.scheme == "chdb":
            return cls._connect_chdb(parsed.netloc, parsed.path, query, database, lock_timeout)
        if parsed.scheme in ("http", "https"):
            db = database or unquote(parsed.path.strip("/")) or query.get("database")
            db = _identifier(db or DEFAULT_DATABASE, "database")  # before any connection
            try:
                client = clickhouse_connect.get_client(
                    host=parsed.hostname or "localhost",
                    port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                    username=unquote(parsed.username) if parsed.username else None,
                    password=unquote(parsed.password) if parsed.password else "",
                    secure=parsed.scheme == "https",
                    tz_mode="aware",
                )
            except ClickHouseError as exc:
                raise RuntimeFailure(
                    f"cannot reach ClickHouse at {parsed.hostname}:{parsed.port}: {exc}"
                ) from exc
            return cls(client, database=db, location=_safe_url(parsed))
        raise ConfigurationError(
            f"unsupported ClickHouse location {url!r}: use chdb:///absolute/dir, chdb://memory "
            "or http(s)://user:password@host:port/database"
        )

    @classmethod
    def _connect_chdb(
        cls,
        netloc: str,
        path: str,
        query: Mapping[str, str],
        database: str | None,
        lock_timeout: float,
    ) -> AuditStore:
        db = _identifier(database or query.get("database") or DEFAULT_DATABASE, "database")
        if netloc in ("memory", ":memory:") or (not netloc and not path):
            return cls(_chdb_client(None, ":memory:"), database=db, location="chdb://memory")
        if netloc:
            raise ConfigurationError(
                f"chdb://{netloc}{path}: an on-disk chdb location needs an absolute path, "
                "written chdb:///absolute/dir (three slashes)"
            )
        directory = Path(os.path.realpath(unquote(path)))
        _DirectoryLock.acquire(directory, lock_timeout)
        try:
            client = _chdb_client(str(directory), str(directory))
        except BaseException:
            _DirectoryLock.release(directory)
            raise
        return cls(client, database=db, location=f"chdb://{directory}", lock=directory)

    # -- schema -------------------------------------------------------------------------

    def init(self, *, retention_days: int | None = None) -> None:
        """Create the database, ``audit_log``, the ``audit_events`` view and the positions
        table if missing (idempotent). ``retention_days`` (0 = keep forever) changes the
        TTL of an existing table; left out, a new table keeps rows 365 days."""
        ddl = resources.files("agentledger.audit").joinpath("schema.sql").read_text()
        lines = [line for line in ddl.splitlines() if not line.lstrip().startswith("--")]
        days = retention_days or DEFAULT_RETENTION_DAYS
        text = "\n".join(lines).format(database=self.database, retention_days=int(days))
        for statement in (s.strip() for s in text.split(";")):
            if statement:
                self.command(statement)
        self.client.database = self.database
        if retention_days is not None:
            if retention_days == 0:
                with contextlib.suppress(AuditQueryError):  # no TTL to remove is fine
                    self.command(f"ALTER TABLE {self.database}.audit_log REMOVE TTL")
            else:
                self.command(
                    f"ALTER TABLE {self.database}.audit_log MODIFY TTL "
                    f"toDateTime(occurred_at) + INTERVAL {int(retention_days)} DAY DELETE"
                )

    def exists(self) -> bool:
        """Whether ``init()`` has been run against this database."""
        found = self.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} "
            "AND name IN ('audit_log', 'audit_events', 'audit_positions')",
            {"db": self.database},
        )
        return bool(found.rows[0][0] == 3)

    def truncate(self) -> None:
        """Delete every audit row and every stored position (for a clean rebuild)."""
        self.command(f"TRUNCATE TABLE IF EXISTS {self.database}.audit_log")
        self.command(f"TRUNCATE TABLE IF EXISTS {self.database}.audit_positions")

    def drop(self) -> None:
        """Drop the whole database (tests and throw-away stores)."""
        self.command(f"DROP DATABASE IF EXISTS {self.database}")

    # -- writes ---------------------------------------------------------------------------

    def insert_rows(self, rows: Sequence[AuditRow]) -> int:
        """Insert rows as one batch. Inserting an event again is harmless: ``audit_events``
        shows each ``event_id`` once. Returns the number of rows written."""
        if not rows:
            return 0
        return self.insert_values([row.values() for row in rows])

    def insert_values(self, values: Sequence[Sequence[Any]]) -> int:
        """Insert pre-built value tuples in ``AUDIT_COLUMNS`` order (the fast path)."""
        if not values:
            return 0
        try:
            self.client.insert(
                "audit_log",
                values,
                column_names=AUDIT_COLUMNS,
                database=self.database,
                column_type_names=[COLUMN_TYPES[c] for c in AUDIT_COLUMNS],
            )
        except ClickHouseError as exc:
            raise RuntimeFailure(f"audit insert into {self.location} failed: {exc}") from exc
        return len(values)

    def get_position(self, source: str) -> int:
        """The log offset up to which ``source`` has been written (0 when never)."""
        found = self.query(
            f"SELECT argMax(position, version) FROM {self.database}.audit_positions "
            "WHERE source = {source:String}",
            {"source": source},
        )
        return int(found.rows[0][0]) if found.rows else 0

    def set_position(self, source: str, offset: int) -> None:
        # The version must grow even when two writes fall in one nanosecond tick, or a
        # reset to 0 (rebuild) could lose to the position it replaces.
        self._last_version = max(time.time_ns(), self._last_version + 1)
        try:
            self.client.insert(
                "audit_positions",
                [(source, offset, self._last_version)],
                column_names=("source", "position", "version"),
                database=self.database,
                column_type_names=("String", "UInt64", "UInt64"),
            )
        except ClickHouseError as exc:
            raise RuntimeFailure(
                f"cannot store the audit position in {self.location}: {exc}"
            ) from exc

    # -- reads ----------------------------------------------------------------------------

    def workflows_of(self, task_ids: Iterable[str]) -> dict[str, str]:
        """The workflow of each task whose goal is already in the table."""
        ids = sorted(set(task_ids))
        if not ids:
            return {}
        found = self.query(
            f"SELECT task_id, any(workflow) FROM {self.database}.audit_log "
            "WHERE type = 'goal_submitted' AND task_id IN {ids:Array(String)} GROUP BY task_id",
            {"ids": ids},
        )
        return {str(task): str(workflow) for task, workflow in found.rows}

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Table:
        """Run a SELECT (``{name:Type}`` placeholders bound from ``parameters``)."""
        try:
            result = self.client.query(sql, parameters=dict(parameters or {}))
        except ClickHouseError as exc:
            raise AuditQueryError(_clean(exc)) from exc
        return Table(tuple(result.column_names), [tuple(row) for row in result.result_rows])

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, ALTER, TRUNCATE, OPTIMIZE)."""
        try:
            self.client.command(sql, parameters=dict(parameters or {}))
        except ClickHouseError as exc:
            raise AuditQueryError(_clean(exc)) from exc

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the client, and the chdb directory once no store of this process uses it."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close()
        finally:
            if self._lock is not None:
                _DirectoryLock.release(self._lock)

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditStore({self.location!r}, database={self.database!r})"


def _chdb_client(path: str | None, shown: str) -> Client:
    try:
        return clickhouse_connect.get_client(interface="chdb", path=path, tz_mode="aware")
    except ClickHouseError as exc:
        if "already initialized with path" in str(exc):
            raise ConfigurationError(
                f"cannot open the audit store {shown}: this process already runs the embedded "
                "ClickHouse engine on another directory, and chdb allows one per process; "
                "close the other AuditStore first"
            ) from exc
        raise AuditStoreBusyError(
            f"cannot open the embedded ClickHouse engine at {shown}: {_clean(exc)}"
        ) from exc


def _clean(exc: BaseException) -> str:
    # Keep ClickHouse's own sentence; drop the stack-trace tail some versions append.
    text = str(exc).strip()
    return text.split("\nStack trace", 1)[0].strip()


def _safe_url(parsed: Any) -> str:
    host = parsed.hostname or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}"


@contextlib.contextmanager
def open_store(url: str, **kwargs: Any) -> Iterator[AuditStore]:
    """``with open_store(url) as store:`` — connect, yield, always close."""
    store = AuditStore.connect(url, **kwargs)
    try:
        yield store
    finally:
        store.close()
