"""Masking events before they are written, with placeholders a vault can resolve.

The primary log is masked by default: every event is passed through ``Masker.mask_event``
before it is appended, so the live state, a resume and a replay all see the same masked
events. A finding becomes a deterministic placeholder, ``[email:3f2a9c1e0b7d]``: an HMAC of
the value under a key that never leaves this machine, so the same address is the same
placeholder everywhere (an agent can still tell two recipients apart, idempotency keys
stay stable) and nothing can be guessed back from it.

The raw value goes to a ``Vault`` beside the ledger (``vault.db``: the key and the
placeholder → value map). Only a tool that declares ``raw_values=True`` gets its arguments
resolved from the vault, at the moment it runs; everything else (the model, the log, the
audit copy, Python logs) sees placeholders. Deleting the vault file forgets the raw values.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import JsonValue

from agentledger.errors import EventLogError
from agentledger.redaction import PLACEHOLDER, redact
from agentledger.schemas import EVENT_TYPES, EventBase
from agentledger.schemas.codec import to_dict
from agentledger.security.private_files import private_dir, private_file

__all__ = ["Masker", "MemoryVault", "SqliteVault", "Vault"]

# Ids, names and digests: never personal data, and masking them would break references.
_KEEP = frozenset(
    {
        "event_id",
        "task_id",
        "seq",
        "causation_id",
        "correlation_id",
        "agent",
        "occurred_at",
        "schema_version",
        "type",
        "subtask_id",
        "call_id",
        "tool",
        "idempotency_key",
        "request_digest",
        "depends_on",
        "result_subtasks",
        "workflow",
        "model",
        "provider",
        "output_model",
        "rules",
        "action",
    }
)


class Vault(Protocol):
    """Where the raw value behind each placeholder is kept, and the hashing key."""

    def key(self) -> bytes: ...

    def put(self, items: dict[str, str]) -> None: ...

    def get(self, placeholder: str) -> str | None: ...


class MemoryVault:
    """A vault for one process (tests, or when no raw value must outlive the process)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or os.urandom(32)
        self._values: dict[str, str] = {}

    def key(self) -> bytes:
        return self._key

    def put(self, items: dict[str, str]) -> None:
        self._values.update(items)

    def get(self, placeholder: str) -> str | None:
        return self._values.get(placeholder)


class SqliteVault:
    """The vault beside the ledger: one SQLite file holding the key and the raw values."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        private_file(private_dir(self.path.parent) / self.path.name)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vault (placeholder TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        # First writer wins, so two processes sharing the file agree on the key.
        self._db.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('hmac_key', ?)", (os.urandom(32),)
        )
        self._key: bytes = self._db.execute(
            "SELECT value FROM meta WHERE name = 'hmac_key'"
        ).fetchone()[0]

    def key(self) -> bytes:
        return self._key

    def put(self, items: dict[str, str]) -> None:
        # Raised as a log failure: the event must not be written with a placeholder that
        # nothing can resolve, so the runner stops and reports it like a failed append.
        try:
            with self._lock:
                self._db.executemany(
                    "INSERT OR IGNORE INTO vault (placeholder, value) VALUES (?, ?)", items.items()
                )
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot write to the vault {self.path}: {exc}") from exc

    def get(self, placeholder: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM vault WHERE placeholder = ?", (placeholder,)
            ).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        self._db.close()


class Masker:
    """Turns raw values into placeholders (remembering them in the vault) and back.

    ``vault`` may be a function that opens one: it is called the first time a value is
    found, so a writer with nothing to mask never creates a vault file."""

    def __init__(self, vault: Vault | Callable[[], Vault] | None = None) -> None:
        self._vault: Vault | Callable[[], Vault] = vault if vault is not None else MemoryVault()
        self._key: bytes | None = None

    @property
    def vault(self) -> Vault:
        if callable(self._vault):
            self._vault = self._vault()
        return self._vault

    def placeholder(self, kind: str, raw: str) -> str:
        if self._key is None:
            self._key = self.vault.key()
        digest = hmac.new(self._key, f"{kind}:{raw}".encode(), hashlib.sha256).hexdigest()
        return f"[{kind}:{digest[:12]}]"

    def _marker(self, found: dict[str, str]) -> Any:
        """A ``redact`` mark that collects each placeholder and its raw value in ``found``."""

        def mark(kind: str, raw: str) -> str:
            ph = self.placeholder(kind, raw)
            found[ph] = raw
            return ph

        return mark

    def mask(self, value: Any) -> Any:
        """A copy of a JSON-like value with findings replaced by placeholders (kept in the vault)."""
        found: dict[str, str] = {}
        masked = redact(value, self._marker(found))
        if found:
            self.vault.put(found)
        return masked

    def mask_event(self, event: EventBase) -> EventBase:
        """``event`` with every fact masked (ids, names and digests kept); the same object
        when there was nothing to mask. On the write path of every event: one walk of the
        facts, and the vault and the model are touched only when something was found."""
        data = to_dict(event)
        found: dict[str, str] = {}
        mark = self._marker(found)
        for name, value in data.items():
            if name not in _KEEP:
                data[name] = redact(value, mark)
        if not found:
            return event
        self.vault.put(found)
        return EVENT_TYPES[event.event_type].model_validate(data)

    def unmask(self, value: JsonValue) -> JsonValue:
        """A copy of ``value`` with the placeholders the vault knows replaced by raw values."""
        if isinstance(value, str):
            if "[" not in value:
                return value
            return PLACEHOLDER.sub(lambda m: self.vault.get(m.group()) or m.group(), value)
        if isinstance(value, dict):
            return {k: self.unmask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.unmask(v) for v in value]
        return value
