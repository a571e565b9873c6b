"""A running console announces itself in ``$AGENTLEDGER_HOME/console.json``, so that
``agentledger run`` can print a link to the run's page.

The file names the ledger the console shows and its process id; a link is offered only
when that process is alive and shows the same ledger.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson

FILE_NAME = "console.json"


def announce(home: Path, url: str, ledger: Path | None) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / FILE_NAME
    body = {
        "url": url,
        "pid": os.getpid(),
        "ledger": str(ledger.resolve()) if ledger else None,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(body))
    tmp.replace(path)
    return path


def withdraw(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if orjson.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_link(home: Path, ledger: Path, task_id: str) -> str | None:
    """The console URL of ``task_id``, when a live console shows ``ledger``."""
    try:
        body = orjson.loads((home / FILE_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("pid"), int):
        return None
    if body.get("ledger") != str(ledger.resolve()) or not _alive(body["pid"]):
        return None
    return f"{str(body.get('url', '')).rstrip('/')}/#/runs/{task_id}"
