"""``agentledger approvals | approve | deny``: people decide risky tool calls.

::

    agentledger approvals [--task TASK] [--json]        # pending approvals across the ledger
    agentledger approve ID [--by NAME] [--note TEXT] [--no-continue]
    agentledger deny ID --reason TEXT [--by NAME] [--no-continue]

A decision is appended to the task's log like a goal is (its cause is the request), and
then the task is driven on, as ``resume`` would, to its end or its next pause.

With ``--brokers`` (Kafka) the commands read the events topic instead, and a decision is
produced unstamped (seq 0) to the task's partition: the worker that drives the task gives
it the next seq and continues the task; the command does not drive it.
"""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any, TextIO

import orjson

from agentledger.approvals_text import Sent, decision_text, describe_pending
from agentledger.cli_ledger import open_ledger, resolve_task
from agentledger.errors import SequenceConflictError, TaskLeasedError, UsageError
from agentledger.projections.task_state import TaskState, fold
from agentledger.redaction import redact, redact_text
from agentledger.schemas import TERMINAL_TYPES, ApprovalDenied, ApprovalGranted, utc_now
from agentledger.settings import Settings
from agentledger.streams.kafka_cli import add_connection_options, open_kafka_log
from agentledger.streams.log import EventLog, events_of
from agentledger.streams.sqlite import SqliteEventLog

EXIT_OK = 0


def register(sub: Any) -> None:
    """Add the approval subcommands to the ``agentledger`` parser."""
    p = sub.add_parser("approvals", help="tool calls waiting for a person's approval")
    p.add_argument("--task", help="only this task (a unique prefix works)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    add_connection_options(p, required=False)
    p.set_defaults(func=cmd_approvals)

    for name, helptext in (
        ("approve", "grant a pending approval; the task continues"),
        ("deny", "deny a pending approval; its subtask fails with the reason"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("approval_id", metavar="ID", help="as `agentledger approvals` lists it")
        p.add_argument("--task", help="the task, when the id alone is ambiguous")
        p.add_argument("--by", help="who decides (default: the login name)")
        if name == "approve":
            p.add_argument("--note", help="why, for the record")
        else:
            p.add_argument("--reason", required=True, help="why; the subtask fails with it")
        p.add_argument(
            "--no-continue",
            dest="drive",
            action="store_false",
            help="only record the decision (a live run of the task, or `resume`, continues it)",
        )
        p.add_argument("--workflow", help="workflow file (default: the one the task recorded)")
        p.add_argument("--output", "-o", help="write the result to this file")
        p.add_argument("--quiet", "-q", action="store_true", help="no per-step progress")
        add_connection_options(p, required=False)
        p.set_defaults(func=cmd_decide, granted=name == "approve")


async def _open_states(log: EventLog, task: str | None) -> list[tuple[TaskState, Sent]]:
    """The folded state of ``task``, or of every unfinished task in the ledger, each with
    the decisions sent to it that its worker has not stamped yet (Kafka only)."""
    from agentledger.streams.kafka import KafkaEventLog

    if task is not None:
        ids = [await resolve_task(log, task)]
    else:
        ids = [
            t.task_id for t in await log.tasks(limit=1_000_000) if t.last_type not in TERMINAL_TYPES
        ]
    states = []
    for task_id in ids:
        if isinstance(log, KafkaEventLog):
            entries = await log.read_task(task_id, unstamped=True)
        else:
            entries = await log.read_task(task_id)
        events = events_of(entries)
        sent: Sent = {
            e.approval_id: e
            for e in events
            if e.seq == 0 and isinstance(e, ApprovalGranted | ApprovalDenied)
        }
        states.append((fold(task_id, [e for e in events if e.seq]), sent))
    return states


async def cmd_approvals(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    log = await _open(args, settings)
    try:
        states = await _open_states(log, args.task)
    finally:
        await log.close()
    now = utc_now()
    count = 0
    for state, sent in states:
        if state.terminal:
            continue
        for a in state.pending_approvals:
            count += 1
            if args.json:
                row = {
                    **a.as_row(state.task_id),
                    "expired": a.expires_at <= now,
                    "decision_sent": decision_text(sent[a.id]) if a.id in sent else None,
                }
                print(orjson.dumps(redact(row)).decode(), file=out)
        if state.pending_approvals and not args.json:
            print(f"task {state.task_id}", file=out)
            for line in describe_pending(state, now, sent):
                print(redact_text(line), file=out)
    if not count:
        print("no pending approvals", file=err)
    return EXIT_OK


async def cmd_decide(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.approvals import decision
    from agentledger.run_cli import cmd_resume

    by = args.by or getpass.getuser()
    text = args.note if args.granted else args.reason
    if args.brokers:
        return await _decide_on_kafka(args, by, text, out)
    log = open_ledger(args, settings)
    try:
        for attempt in range(3):  # the task may gain an event between reading and appending
            state, _ = await _find(log, args.approval_id, args.task)
            if args.drive and isinstance(log, SqliteEventLog):
                refuse_if_leased(log, state.task_id, settings)
            event = decision(state, args.approval_id, granted=args.granted, by=by, text=text)
            try:
                await log.append([event.model_copy(update={"seq": state.last_seq + 1})])
                break
            except SequenceConflictError:
                if attempt == 2:
                    raise
    finally:
        await log.close()
    verb = "granted" if args.granted else "denied"
    print(
        f"approval {args.approval_id} {verb} by {by} (task {state.task_id})", file=out, flush=True
    )
    if not args.drive:
        return EXIT_OK
    resume = argparse.Namespace(
        db=args.db,
        task=state.task_id,
        workflow=args.workflow,
        output=args.output,
        quiet=args.quiet,
        take_over=False,
    )
    return int(await cmd_resume(resume, settings, out, err))


def refuse_if_leased(log: SqliteEventLog, task_id: str, settings: Settings) -> None:
    """Deciding would also drive the task (the default): refuse before deciding anything
    if another live process drives it."""
    held = log.leases.get(task_id)
    now = time.time()
    if held is not None and held.staleness(now, settings.lease_stale_after_s) is None:
        raise TaskLeasedError(
            task_id,
            held.owner,
            held.pid,
            held.host,
            held.age(now),
            hint="nothing was decided. Decide with --no-continue: that process takes the "
            "decision in and continues the task",
        )


async def _open(args: argparse.Namespace, settings: Settings) -> EventLog:
    """The Kafka log with ``--brokers``, else the SQLite ledger."""
    if args.brokers:
        return await open_kafka_log(args)
    return open_ledger(args, settings)


async def _decide_on_kafka(args: argparse.Namespace, by: str, text: str | None, out: TextIO) -> int:
    """Produce the decision unstamped to the task's partition; its worker does the rest."""
    from agentledger.agents.approvals import decision

    async with await open_kafka_log(args) as log:
        state, sent = await _find(log, args.approval_id, args.task)
        event = decision(state, args.approval_id, granted=args.granted, by=by, text=text)
        earlier = sent.get(args.approval_id)
        if earlier is not None:
            raise UsageError(
                f"approval {args.approval_id} was already {decision_text(earlier)}; that decision "
                "waits for the task's worker to record it, and a decision cannot be changed"
            )
        await log.append([event])  # seq 0: the worker stamps it
    verb = "granted" if args.granted else "denied"
    print(
        f"approval {args.approval_id} {verb} by {by} (task {state.task_id}); the task's "
        f"worker records the decision and continues the task "
        f"(`agentledger kafka status {state.task_id}`)",
        file=out,
        flush=True,
    )
    return EXIT_OK


async def _find(log: EventLog, approval_id: str, task: str | None) -> tuple[TaskState, Sent]:
    """The state of the one task that holds ``approval_id``."""
    holders = [s for s in await _open_states(log, task) if approval_id in s[0].approvals]
    if not holders:
        where = f"task {task}" if task else "any unfinished task of this ledger"
        raise UsageError(
            f"no approval {approval_id!r} in {where}; `agentledger approvals` lists pending ones"
        )
    if len(holders) > 1:
        raise UsageError(
            f"approval id {approval_id!r} is in several tasks "
            f"({', '.join(s.task_id for s, _ in holders)}); pass --task"
        )
    return holders[0]
