"""The CLI as the tests drive it: in-process (``main(argv)``) or as a process, on a fresh
``AGENTLEDGER_HOME`` (the ``home`` fixture, a plugin of tests/conftest.py that a test module
overrides with its own ``home`` where it needs more), with the deliveries fixture workflow and
raw reads of ``ledger.db``."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentledger.cli import main
from agentledger.schemas import Event
from agentledger.streams.log import task_events
from agentledger.streams.sqlite import SqliteEventLog

DELIVERIES = Path(__file__).resolve().parents[1] / "fixtures" / "deliveries" / "workflow.yaml"


def cli(*argv: str) -> tuple[int, str, str]:
    """``agentledger ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def cli_process(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``agentledger ARGS`` as a child process (to be signalled or killed)."""
    return subprocess.Popen(
        [sys.executable, "-m", "agentledger.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``AGENTLEDGER_HOME``; the deliveries model answers without its demo delay."""
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    monkeypatch.setenv("DELIVERIES_MODEL_DELAY", "0")
    return tmp_path


def sql(home: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    """One statement on ``home``'s ledger with sqlite3, committed (to corrupt it on purpose)."""
    db = sqlite3.connect(home / "ledger.db")
    try:
        rows = db.execute(statement, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def stored_events(db: Path) -> list[dict[str, Any]]:
    """Every event row of ``db`` as stored, read-only; none while it does not exist yet."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [orjson.loads(r[0]) for r in con.execute("SELECT data FROM events ORDER BY offset")]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def ledger_events(home: Path, task_id: str) -> list[Event]:
    """A task's events as ``home``'s ledger holds them."""

    async def read() -> list[Event]:
        log = SqliteEventLog(home / "ledger.db")
        try:
            return await task_events(log, task_id)
        finally:
            await log.close()

    return asyncio.run(read())
