"""The embedded ledger as every CLI command opens and reads it.

One place for the three things each command module needs: open ``ledger.db`` with the
settings' write guard (so whatever a command appends is masked into the settings' vault),
accept a task id or a unique prefix of one, and split a task's entries into events while
reporting corrupt records (masked) on stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from agentledger.errors import UnknownTaskError, UsageError
from agentledger.redaction import redact as shown  # every view is masked, whatever the log holds
from agentledger.schemas import Event
from agentledger.security.masking import Masker, SqliteVault
from agentledger.settings import Settings
from agentledger.streams.log import EventLog, LogEntry, Recorded
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.streams.write_guard import WriteGuard


def open_ledger(
    args: argparse.Namespace, settings: Settings, *, create: bool = False
) -> SqliteEventLog:
    """The ledger; only a command that runs tasks creates a missing one (a read of a wrong
    path is exit 4)."""
    path = Path(args.db) if args.db else settings.ledger_path
    return SqliteEventLog(
        path,
        synchronous=settings.sqlite_synchronous,
        create=create,
        busy_timeout_s=settings.sqlite_busy_timeout_s,
        # Whatever a command appends (a decision's note, a goal) is masked into the settings' vault.
        guard=WriteGuard(Masker(lambda: SqliteVault(settings.vault_path))),
    )


async def resolve_task(log: EventLog, task: str) -> str:
    """Accept a full task id or a unique prefix of one."""
    if await log.read_task(task):
        return task
    matches = [t.task_id for t in await log.tasks(limit=100_000) if t.task_id.startswith(task)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"task prefix {task!r} is ambiguous: {', '.join(matches[:5])}")
    raise UnknownTaskError(task)


def split_entries(entries: Sequence[LogEntry], err: TextIO) -> list[Event]:
    """The events among ``entries``; each corrupt record is one masked line on ``err``."""
    events: list[Event] = []
    for entry in entries:
        if isinstance(entry, Recorded):
            events.append(entry.event)
        else:
            print(f"!! offset {entry.offset} (seq {entry.seq}): {shown(entry.reason)}", file=err)
    return events
