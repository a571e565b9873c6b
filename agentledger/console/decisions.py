"""Approve or deny from the console, recorded exactly as ``agentledger approve|deny`` records it.

The decision goes through the CLI's own command (``approvals_cli.cmd_decide``) with
``--no-continue``; then, in the embedded shape, the console drives the task on as
``agentledger resume`` would (``cli.cmd_resume``), in the background, one drive per task at
a time. On Kafka the decision is produced unstamped and the task's worker continues it.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import logging
from contextlib import suppress

from agentledger.console.source import ConsoleSource
from agentledger.errors import UsageError

logger = logging.getLogger(__name__)


class DecisionDesk:
    def __init__(self, source: ConsoleSource, *, by: str | None = None) -> None:
        self.source = source
        self.by = by or _login()
        self._drives: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    async def decide(
        self, approval_id: str, *, task: str | None, granted: bool, text: str | None
    ) -> str:
        """Record the decision on ``approval_id`` of ``task``; return what the CLI printed."""
        from agentledger.approvals_cli import cmd_decide

        if not granted and not text:
            raise UsageError("a denial needs a reason")
        args = self.source.cli_args(
            approval_id=approval_id,
            task=task,
            by=self.by,
            note=text if granted else None,
            reason=None if granted else text,
            granted=granted,
            drive=False,
            workflow=None,
            output=None,
            quiet=True,
        )
        out, err = io.StringIO(), io.StringIO()
        await cmd_decide(args, self.source.settings, out, err)
        if not self.source.brokers and task:
            self._drive(task)
        return out.getvalue().strip()

    def _drive(self, task_id: str) -> None:
        running = self._drives.get(task_id)
        if running is not None and not running.done():
            self._again.add(task_id)  # decided while it ran: drive once more after
            return
        self._drives[task_id] = asyncio.create_task(self._resume(task_id))

    async def _resume(self, task_id: str) -> None:
        from agentledger.run_cli import cmd_resume

        while True:
            self._again.discard(task_id)
            args = self.source.cli_args(task=task_id, workflow=None, output=None, quiet=True)
            out, err = io.StringIO(), io.StringIO()
            try:
                await cmd_resume(args, self.source.settings, out, err)
            except Exception as exc:  # reported, never fatal to the console
                logger.warning("console: driving task %s on failed: %s", task_id, exc)
            if task_id not in self._again:
                return

    async def aclose(self) -> None:
        for task in self._drives.values():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "console"
