"""The ``agentledger`` command: a thin layer over the library. ``main(argv) -> exit code``.

Exit codes: 0 success; 1 the task failed or was cancelled; 2 bad usage or input;
3 the task is not finished (it waits, e.g. for an approval); 4 the ledger could not be
read or written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from agentledger import timeline
from agentledger.errors import AgentLedgerError, EventLogError, UnknownTaskError, UsageError
from agentledger.projections.task_state import TaskState, fold
from agentledger.redaction import redact as shown  # every view is masked, whatever the log holds
from agentledger.schemas import TERMINAL_TYPES, Event, GoalSubmitted
from agentledger.schemas.codec import to_dict
from agentledger.security.logs import install_log_redaction
from agentledger.security.masking import Masker, SqliteVault
from agentledger.settings import Settings
from agentledger.streams.log import CorruptRecord, EventLog, LogEntry, Recorded
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.streams.write_guard import WriteGuard

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED, EXIT_LOG = 0, 1, 2, 3, 4


def _open_log(args: argparse.Namespace, settings: Settings) -> SqliteEventLog:
    path = Path(args.db) if args.db else settings.ledger_path
    # Whatever a command appends (a decision's note, a goal) is masked into the settings' vault.
    guard = WriteGuard(Masker(lambda: SqliteVault(settings.vault_path)))
    return SqliteEventLog(path, synchronous=settings.sqlite_synchronous, guard=guard)


async def _resolve_task(log: EventLog, task: str) -> str:
    """Accept a full task id or a unique prefix of one."""
    if await log.read_task(task):
        return task
    matches = [t.task_id for t in await log.tasks(limit=100_000) if t.task_id.startswith(task)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"task prefix {task!r} is ambiguous: {', '.join(matches[:5])}")
    raise UnknownTaskError(task)


def _split(entries: Sequence[LogEntry], err: TextIO) -> list[Event]:
    events: list[Event] = []
    for entry in entries:
        if isinstance(entry, Recorded):
            events.append(entry.event)
        else:
            print(f"!! offset {entry.offset} (seq {entry.seq}): {shown(entry.reason)}", file=err)
    return events


class _Progress:
    """Prints each event of a run as it is written."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out, self.quiet = out, quiet

    def __call__(self, event: Event, fresh: bool) -> None:
        if not self.quiet:
            marker = " " if fresh else "·"
            print(f"{marker}{shown(timeline.line(event))}", file=self.out, flush=True)


def _notice_scripted(workflow: Any, err: TextIO) -> None:
    scripted = sorted(a.name for a in workflow.agents.values() if a.model.provider == "scripted")
    if scripted:
        print(
            "note: no model endpoint configured for "
            + ("any agent" if len(scripted) == len(workflow.agents) else ", ".join(scripted))
            + ": using the offline scripted model (set model.provider/base_url in the workflow, "
            "or AGENTLEDGER_MODEL_PROVIDER / AGENTLEDGER_MODEL_BASE_URL)",
            file=err,
        )


def _finish(
    state: TaskState, out: TextIO, err: TextIO, output: str | None, workflow: Any = None
) -> int:
    print(file=out)
    if state.status == "completed":
        result = workflow.present(state.result) if workflow is not None else state.result
        rendered = timeline.render_result(result)
        if output:
            Path(output).write_text(rendered + "\n")
            print(f"result written to {output}", file=out)
        else:
            print(rendered, file=out)
        print(f"\ntask {state.task_id} completed", file=out)
        return EXIT_OK
    if state.status in ("failed", "cancelled"):
        print(f"task {state.task_id} {state.status}: {state.failure}", file=err)
        return EXIT_FAILED
    if state.pending_approvals:
        from agentledger.approvals_cli import print_waiting

        print_waiting(state, out)
        return EXIT_UNFINISHED
    print(
        f"task {state.task_id} is {state.status} and nothing is in flight; "
        f"see `agentledger status {state.task_id}`",
        file=err,
    )
    return EXIT_UNFINISHED


async def cmd_run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.runtime import build_runtime
    from agentledger.agents.workflow import load_workflow
    from agentledger.streams.embedded import EmbeddedRunner

    workflow = load_workflow(args.workflow, settings=settings)
    inputs: dict[str, Any] = {}
    for item in args.input or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--input {item!r} must look like key=value")
        inputs[key] = value
    _notice_scripted(workflow, err)
    log = _open_log(args, settings)
    runtime = build_runtime(workflow, settings)
    try:
        runner = EmbeddedRunner(log, runtime, on_event=_Progress(out, args.quiet))
        task_id = await runner.submit(args.goal, inputs=inputs, submitted_by="cli")
        print(f"task {task_id} ({workflow.name}) — ledger {log.path}", file=out, flush=True)
        state = await runner.run(task_id)
    finally:
        await runtime.aclose()
        await log.close()
    return _finish(state, out, err, args.output, workflow)


async def cmd_resume(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.runtime import build_runtime
    from agentledger.agents.workflow import load_workflow
    from agentledger.streams.embedded import EmbeddedRunner

    log = _open_log(args, settings)
    try:
        task_id = await _resolve_task(log, args.task)
        events = _split(await log.read_task(task_id), err)
        goal = next((e for e in events if isinstance(e, GoalSubmitted)), None)
        if goal is None:
            raise UsageError(f"task {task_id} has no goal_submitted event; it cannot be resumed")
        path = args.workflow or goal.workflow.path
        if not path:
            raise UsageError(f"task {task_id} does not record its workflow file; pass --workflow")
        workflow = load_workflow(path, settings=settings)
        if goal.workflow.digest and workflow.digest != goal.workflow.digest:
            print(f"warning: {path} changed since task {task_id} started", file=err)
        state = fold(task_id, events)
        if state.terminal:
            print(f"task {task_id} already {state.status}; nothing to resume", file=out)
            return EXIT_OK if state.status == "completed" else EXIT_FAILED
        _notice_scripted(workflow, err)
        print(f"resuming task {task_id} from seq {state.last_seq}", file=out, flush=True)
        runtime = build_runtime(workflow, settings)
        try:
            runner = EmbeddedRunner(log, runtime, on_event=_Progress(out, args.quiet))
            state = await runner.run(task_id)
        finally:
            await runtime.aclose()
    finally:
        await log.close()
    return _finish(state, out, err, args.output, workflow)


async def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = _open_log(args, settings)
    try:
        task_id = await _resolve_task(log, args.task)
        state = fold(task_id, _split(await log.read_task(task_id), err))
    finally:
        await log.close()
    print_status(state, args.json, out)
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
    log = _open_log(args, settings)
    try:
        task_id = await _resolve_task(log, args.task)
        await print_events(log, task_id, await log.read_task(task_id), args, out, err)
    finally:
        await log.close()
    return EXIT_OK


async def cmd_replay(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = _open_log(args, settings)
    try:
        task_id = await _resolve_task(log, args.task)
        events = _split(await log.read_task(task_id), err)
    finally:
        await log.close()
    print_replay(task_id, events, args.until, args.json, out)
    return EXIT_OK


async def cmd_tasks(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log = _open_log(args, settings)
    try:
        rows = await log.tasks(limit=args.limit)
    finally:
        await log.close()
    for t in rows:
        print(
            f"{t.task_id}  {t.events:>5} events  last {t.last_at:%Y-%m-%d %H:%M:%S}  {t.last_type}",
            file=out,
        )
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a goal through a workflow, showing each step")
    p.add_argument("workflow", help="workflow file (YAML or TOML)")
    p.add_argument("--goal", required=True)
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
        "--until", type=int, metavar="SEQ", help="stop after this seq (default: the end)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("tasks", help="the most recent tasks in the ledger")
    p.add_argument("--limit", type=int, default=20)
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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=err,
    )
    install_log_redaction()  # no personal data or secret reaches a log handler
    settings = Settings()
    try:
        result = args.func(args, settings, out, err) if _takes_io(args.func) else args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
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


def _takes_io(func: Any) -> bool:
    import inspect

    return len(inspect.signature(func).parameters) == 4


if __name__ == "__main__":
    raise SystemExit(main())
