"""``agentledger run`` and ``agentledger resume``: drive a task on the embedded runner, in
this process, to its end or its next pause, printing each event as it is written.

SIGTERM/SIGINT become a graceful stop (the grace period, then exit 3); ``resume`` continues
from the log. Exit codes as in ``agentledger.exit_codes``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any, TextIO

from agentledger import timeline
from agentledger.approvals_text import print_waiting
from agentledger.cli_input import read_goal
from agentledger.cli_ledger import open_ledger, resolve_task, split_entries
from agentledger.errors import UsageError
from agentledger.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNFINISHED
from agentledger.projections.task_state import TaskState, fold
from agentledger.redaction import redact as shown  # every view is masked, whatever the log holds
from agentledger.schemas import Event, GoalSubmitted
from agentledger.settings import Settings


def _runner_options(settings: Settings, take_over: bool = False) -> dict[str, Any]:
    return {
        "lease_stale_after_s": settings.lease_stale_after_s,
        "grace_s": settings.shutdown_grace_s,
        "take_over": take_over,
    }


async def _drive(runner: Any, task_id: str, err: TextIO) -> TaskState:
    """``runner.run`` with SIGTERM/SIGINT turned into a graceful stop (grace, then exit 3)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _on_signal, runner, sig, err)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
    try:
        state: TaskState = await runner.run(task_id)
        return state
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _on_signal(runner: Any, sig: signal.Signals, err: TextIO) -> None:
    print(
        f"{sig.name}: no new work starts; in-flight calls get {runner.grace_s:g}s to finish "
        "(signal again to stop now)",
        file=err,
        flush=True,
    )
    runner.request_stop(sig.name)


def _interrupted(task_id: str, err: TextIO) -> int:
    print(
        f"task {task_id} stopped by a signal before it ended; "
        f"`agentledger resume {task_id}` continues from the log",
        file=err,
    )
    return EXIT_UNFINISHED


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

    goal = read_goal(args.goal, args.goal_file, settings.max_goal_chars)
    workflow = load_workflow(args.workflow, settings=settings)
    inputs: dict[str, Any] = {}
    for item in args.input or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--input {item!r} must look like key=value")
        inputs[key] = value
    _notice_scripted(workflow, err)
    log = open_ledger(args, settings, create=True)
    try:
        runtime = build_runtime(workflow, settings, memory_log=log)
        try:
            runner = EmbeddedRunner(
                log, runtime, on_event=_Progress(out, args.quiet), **_runner_options(settings)
            )
            task_id = await runner.submit(goal, inputs=inputs, submitted_by="cli")
            print(f"task {task_id} ({workflow.name}) — ledger {log.path}", file=out, flush=True)
            _print_console_link(settings, log.path, task_id, out)
            state = await _drive(runner, task_id, err)
        finally:
            await runtime.aclose()
    finally:
        await log.close()
    if runner.interrupted is not None:
        return _interrupted(task_id, err)
    return _finish(state, out, err, args.output, workflow)


def _print_console_link(settings: Settings, ledger: Path, task_id: str, out: TextIO) -> None:
    """When `agentledger ui` shows this ledger, where to watch the run."""
    from agentledger.console.discovery import run_link

    link = run_link(settings.home, ledger, task_id)
    if link:
        print(f"watch it live: {link}", file=out, flush=True)


async def cmd_resume(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.runtime import build_runtime
    from agentledger.agents.workflow import load_workflow
    from agentledger.streams.embedded import EmbeddedRunner

    log = open_ledger(args, settings)
    try:
        task_id = await resolve_task(log, args.task)
        events = split_entries(await log.read_task(task_id), err)
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
        runtime = build_runtime(workflow, settings, memory_log=log)
        try:
            runner = EmbeddedRunner(
                log,
                runtime,
                on_event=_Progress(out, args.quiet),
                **_runner_options(settings, getattr(args, "take_over", False)),
            )
            state = await _drive(runner, task_id, err)
        finally:
            await runtime.aclose()
    finally:
        await log.close()
    if runner.interrupted is not None:
        return _interrupted(task_id, err)
    return _finish(state, out, err, args.output, workflow)
