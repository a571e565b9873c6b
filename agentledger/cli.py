"""The ``agentledger`` command: a thin layer over the library. ``main(argv) -> exit code``.

Exit codes: 0 success; 1 the task failed or was cancelled; 2 bad usage or input;
3 the task is not finished (it waits, e.g. for an approval, or the run was stopped by a
signal); 4 the ledger could not be read or written (missing, read-only, locked, malformed,
replaced) or the task is quarantined; 5 another live process drives the task (its lease).
No path ends in a traceback unless ``--debug`` asks for one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from agentledger import timeline
from agentledger.cli_input import non_negative_int, positive_int
from agentledger.cli_ledger import open_ledger, resolve_task, split_entries
from agentledger.errors import (
    AgentLedgerError,
    EventLogError,
    TaskLeasedError,
    UsageError,
)
from agentledger.exit_codes import (
    EXIT_FAILED,
    EXIT_LEASED,
    EXIT_LOG,
    EXIT_OK,
    EXIT_USAGE,
)
from agentledger.projections.task_state import TaskState, fold
from agentledger.redaction import redact as shown  # every view is masked, whatever the log holds
from agentledger.run_cli import cmd_resume, cmd_run
from agentledger.schemas import TERMINAL_TYPES, Event
from agentledger.schemas.codec import to_dict
from agentledger.security.logs import install_log_redaction
from agentledger.settings import Settings
from agentledger.streams.log import UNKNOWN_TIME, CorruptRecord, EventLog, LogEntry, Recorded
from agentledger.terminal import TerminalText

# streams/kafka_cli.py still imports these under their former private names.
_resolve_task = resolve_task
_split = split_entries


async def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = open_ledger(args, settings)
    try:
        task_id = await resolve_task(log, args.task)
        events = split_entries(await log.read_task(task_id), err)
        state = fold(task_id, events)
    finally:
        await log.close()
    if events and all(e.type.startswith(("eval_", "memory_erased")) for e in events):
        kinds = ", ".join(sorted({e.type for e in events}))
        hint = f"agentledger eval report {task_id}" if "eval_run_started" in kinds else ""
        raise UsageError(
            f"{task_id} is not a task: it holds {kinds}; `agentledger events {task_id}` "
            "shows them" + (f", `{hint}` the eval run" if hint else "")
        )
    from agentledger.evaluation.fork import lineage, lineage_line

    forked = lineage(events)
    if args.json and forked is not None:  # a fork's lineage beside its state
        body = {**_state_json(state), "forked_from": forked.parent_task_id}
        body["fork_seq"] = forked.fork_seq
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(), file=out)
        return EXIT_OK
    print_status(state, args.json, out)
    if not args.json and (line := lineage_line(events)) is not None:
        print(line, file=out)
    return EXIT_OK


def print_status(state: TaskState, as_json: bool, out: TextIO) -> None:
    """A task's state, for people or as JSON (shared by the embedded and Kafka views)."""
    if as_json:
        body = shown(_state_json(state))
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(), file=out)
    else:
        print(shown(timeline.summary(state)), file=out)


def print_replay(
    task_id: str, events: list[Event], until: int | None, as_json: bool, out: TextIO
) -> None:
    """The timeline up to ``until`` and the state as it was then (default: the end)."""
    until = until if until is not None else max((e.seq for e in events), default=0)
    events_shown = [e for e in events if e.seq <= until]
    state = fold(task_id, events_shown)
    if as_json:
        body = {
            "until": until,
            "events": [to_dict(e) for e in events_shown],
            "state": _state_json(state),
        }
        print(orjson.dumps(shown(body), option=orjson.OPT_INDENT_2).decode(), file=out)
        return
    for e in events_shown:
        print(shown(timeline.line(e)), file=out)
    print(f"\n--- state as of seq {until} ---", file=out)
    print(shown(timeline.summary(state)), file=out)


def _state_json(state: TaskState) -> dict[str, Any]:
    return {
        "task_id": state.task_id,
        "status": state.status,
        "workflow": state.workflow.name if state.workflow else None,
        "goal": state.goal,
        "events": state.last_seq,
        "llm_calls": state.llm_calls,
        "tool_calls": state.tool_calls,
        "tokens_in": state.tokens_in,
        "tokens_out": state.tokens_out,
        "cost_usd": state.cost_usd,
        "unpriced_calls": state.unpriced_calls,
        "iterations": dict(state.iterations),
        "subtasks": {
            s.id: {
                "agent": s.agent,
                "status": s.status,
                "iteration": s.iteration,
                "depends_on": list(s.depends_on),
                "error": s.error,
            }
            for s in state.subtasks.values()
        },
        "pending_approvals": [
            {"approval_id": a.id, "tool": a.tool, "agent": a.agent, "subtask_id": a.subtask_id}
            for a in state.pending_approvals
        ],
        "warnings": list(state.warnings),
        "errors": list(state.errors),
        "failure": state.failure,
        "result": state.result,
    }


def _print_entry(entry: LogEntry, as_json: bool, out: TextIO, err: TextIO) -> None:
    if isinstance(entry, CorruptRecord):
        if as_json:
            row = {
                "offset": entry.offset,
                "task_id": entry.task_id,
                "seq": entry.seq,
                "corrupt": entry.reason,
            }
            print(orjson.dumps(shown(row)).decode(), file=out)
        else:
            print(f"!! offset {entry.offset} (seq {entry.seq}): {shown(entry.reason)}", file=err)
        return
    if as_json:
        row = {"offset": entry.offset, **to_dict(entry.event)}
        print(orjson.dumps(shown(row)).decode(), file=out)
    else:
        print(shown(timeline.line(entry.event)), file=out)


async def print_events(
    log: EventLog,
    task_id: str,
    entries: list[LogEntry],
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
) -> None:
    """Print a task's events (``--json``), then with ``--follow`` the new ones until it ends."""
    for entry in entries:
        _print_entry(entry, args.json, out, err)
    finished = any(isinstance(e, Recorded) and e.event.type in TERMINAL_TYPES for e in entries)
    if args.follow and not finished:
        last = max((e.offset for e in entries), default=0)
        async for entry in log.follow(last, task_id=task_id):
            _print_entry(entry, args.json, out, err)
            out.flush()
            if isinstance(entry, Recorded) and entry.event.type in TERMINAL_TYPES:
                break


async def cmd_events(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = open_ledger(args, settings)
    try:
        task_id = await resolve_task(log, args.task)
        await print_events(log, task_id, await log.read_task(task_id), args, out, err)
    finally:
        await log.close()
    return EXIT_OK


async def cmd_replay(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = open_ledger(args, settings)
    try:
        task_id = await resolve_task(log, args.task)
        events = split_entries(await log.read_task(task_id), err)
    finally:
        await log.close()
    print_replay(task_id, events, args.until, args.json, out)
    return EXIT_OK


async def cmd_tasks(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = open_ledger(args, settings)
    try:
        rows = await log.tasks(limit=args.limit)
    finally:
        await log.close()
    for t in rows:
        last = (
            "(unreadable time)" if t.last_at == UNKNOWN_TIME else f"{t.last_at:%Y-%m-%d %H:%M:%S}"
        )
        print(f"{t.task_id}  {t.events:>5} events  last {last}  {t.last_type}", file=out)
    if not rows:
        print("no tasks in this ledger", file=err)
    return EXIT_OK


async def cmd_validate(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.agents.workflow import load_workflow

    wf = load_workflow(args.workflow, settings=settings)
    start = (
        f"peer_to_peer, entry {wf.entry}"
        if wf.pattern == "peer_to_peer"
        else f"orchestrator {wf.orchestrator}"
    )
    print(
        f"{wf.name}: valid — {len(wf.agents)} agents, {len(wf.tools.names())} tools, {start}",
        file=out,
    )
    for edge in wf.graph.edges:
        print(f"  {edge.source} -> {edge.target}{' (loop)' if edge.loop else ''}", file=out)
    return EXIT_OK


async def cmd_schemas_export(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.schemas.export import export_schemas

    written = export_schemas(Path(args.directory))
    print(f"wrote {len(written)} JSON Schemas to {args.directory}", file=out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentledger",
        description="Event-sourced orchestration runtime for multi-agent LLM systems.",
    )
    parser.add_argument("--db", help="the SQLite ledger (default: $AGENTLEDGER_HOME/ledger.db)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback when a command fails unexpectedly"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a goal through a workflow, showing each step")
    p.add_argument("workflow", help="workflow file (YAML or TOML)")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--goal", help="what the task is to achieve")
    goal.add_argument(
        "--goal-file", metavar="PATH", help="read the goal from a UTF-8 file (- for stdin)"
    )
    p.add_argument(
        "--input", action="append", metavar="KEY=VALUE", help="extra input for the planner"
    )
    p.add_argument("--output", "-o", help="write the result to this file")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-step progress")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "resume", help="finish a task left unfinished (e.g. by a crash) from the log"
    )
    p.add_argument("task")
    p.add_argument("--workflow", help="workflow file (default: the one the task recorded)")
    p.add_argument("--output", "-o")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument(
        "--take-over",
        action="store_true",
        help="take the task even if another process's lease on it is live (it must be hung)",
    )
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="a task's state, rebuilt from its events")
    p.add_argument("task")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("events", help="a task's events in order")
    p.add_argument("task")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events until the task ends"
    )
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("replay", help="a readable timeline and the state as it was at a point")
    p.add_argument("task")
    p.add_argument(
        "--until",
        type=non_negative_int,
        metavar="SEQ",
        help="stop after this seq (default: the end)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("tasks", help="the most recent tasks in the ledger")
    p.add_argument("--limit", type=positive_int, default=20)
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("validate", help="load and validate a workflow file")
    p.add_argument("workflow")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schemas", help="event schemas")
    ssub = p.add_subparsers(dest="schemas_command", required=True, metavar="ACTION")
    e = ssub.add_parser("export", help="write JSON Schema for every event type")
    e.add_argument("directory", nargs="?", default="schemas")
    e.set_defaults(func=cmd_schemas_export)

    _register_optional(sub)
    return parser


def _register_optional(sub: Any) -> None:
    """Subcommands that live beside their feature (audit, kafka, approvals...)."""
    import importlib

    for module in (
        "agentledger.audit.cli",
        "agentledger.streams.kafka_cli",
        "agentledger.tools.cli",
        "agentledger.approvals_cli",
        "agentledger.console.cli",
        "agentledger.otel.cli",
        "agentledger.doctor",
        "agentledger.evaluation.cli",
        "agentledger.memory.cli",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(sub)


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its one-line reason (or --help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=err,
    )
    install_log_redaction()  # no personal data or secret reaches a log handler
    # Untrusted text (goals, model output, tool results) reaches these streams: no control
    # sequence gets through to a terminal. JSON output is already escaped by the encoder.
    err = TerminalText(err)  # type: ignore[assignment]
    if not getattr(args, "json", False):
        out = TerminalText(out)  # type: ignore[assignment]
    try:
        return _call(args, out, err)
    except BrokenPipeError:
        return _closed_stdout()


def _call(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        settings = Settings()
        result = args.func(args, settings, out, err) if _takes_io(args.func) else args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except TaskLeasedError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_LEASED
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except EventLogError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_LOG
    except AgentLedgerError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; `agentledger resume TASK` continues from the log", file=err)
        return 130
    except BrokenPipeError:
        raise
    except sqlite3.Error as exc:  # the ledger or vault file itself: read-only, locked, ...
        _debug(args, err)
        print(f"error: the ledger could not be used: {exc} ({_ledger(args)})", file=err)
        return EXIT_LOG
    except Exception as exc:  # one clear line, not a traceback; --debug shows it
        _debug(args, err)
        kind = "bad input" if isinstance(exc, ValueError | OSError) else "unexpected error"
        print(f"error: {kind}: {type(exc).__name__}: {exc}", file=err)
        if not args.debug:
            print("(run again with --debug for the traceback)", file=err)
        return EXIT_USAGE if kind == "bad input" else EXIT_FAILED


def _ledger(args: argparse.Namespace) -> str:
    return f"--db {args.db}" if getattr(args, "db", None) else "check AGENTLEDGER_HOME / --db"


def _debug(args: argparse.Namespace, err: TextIO) -> None:
    if getattr(args, "debug", False):
        traceback.print_exc(file=err)


def _closed_stdout() -> int:
    """The reader went away (``events --json | head``): stop quietly, like other tools.
    Point stdout at /dev/null so the interpreter's final flush does not complain."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


def _takes_io(func: Any) -> bool:
    import inspect

    return len(inspect.signature(func).parameters) == 4


if __name__ == "__main__":
    raise SystemExit(main())
