"""CLI verbs of evaluation: ``verify``, ``fork``, ``diff`` and ``eval``. Thin: parse, call
the library, print. Exit codes as in ``agentledger.cli``; ``verify`` exits 1 on a
divergence, ``eval report`` exits 1 when a threshold is crossed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

import orjson

from agentledger import timeline
from agentledger.cli_input import utc_time
from agentledger.cli_ledger import open_ledger, resolve_task, split_entries
from agentledger.errors import AgentLedgerError, UsageError
from agentledger.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNFINISHED
from agentledger.schemas import Event, GoalSubmitted, WorkflowRef
from agentledger.settings import Settings
from agentledger.streams.log import EventLog
from agentledger.streams.sqlite import SqliteEventLog


async def read_events(log: EventLog, task_id: str, err: TextIO) -> list[Event]:
    return split_entries(await log.read_task(task_id), err)


def _goal(events: list[Event], task_id: str) -> GoalSubmitted:
    goal = next((e for e in events if isinstance(e, GoalSubmitted)), None)
    if goal is None:
        raise UsageError(f"task {task_id} has no goal_submitted event")
    return goal


def workflow_for(events: list[Event], task_id: str, path: str | None, settings: Settings) -> Any:
    from agentledger.agents.workflow import load_workflow
    from agentledger.evaluation.candidate import with_models
    from agentledger.evaluation.fork import model_overrides

    path = path or _goal(events, task_id).workflow.path
    if not path:
        raise UsageError(f"task {task_id} does not record its workflow file; pass --workflow")
    workflow = load_workflow(path, settings=settings)
    overrides = model_overrides(events)  # a fork runs with the models it was made with
    return with_models(workflow, overrides) if overrides else workflow


async def cmd_verify(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.runtime import build_runtime
    from agentledger.evaluation.verify import verify_events

    if bool(args.task) == bool(args.since):
        raise UsageError("give a TASK or --since DATE (not both)")
    since = utc_time(args.since, "--since") if args.since else None
    log: EventLog
    if args.brokers:  # tasks of the distributed shape, read from <prefix>.events
        from agentledger.streams.kafka_cli import open_kafka_log

        log = await open_kafka_log(args)
    else:
        log = open_ledger(args, settings)
    failed = 0
    try:
        if since is None:
            task_ids = [await resolve_task(log, args.task)]
        else:
            task_ids = [t.task_id for t in await log.tasks(limit=100_000) if t.last_at >= since]
            if not task_ids:
                print(f"no task ran since {args.since}", file=out)
        for task_id in list(task_ids):
            events = await read_events(log, task_id, err)
            if args.since and not any(isinstance(e, GoalSubmitted) for e in events):
                task_ids.remove(task_id)  # an eval run's stream, not a task
                continue
            try:
                workflow = workflow_for(events, task_id, args.workflow, settings)
            except AgentLedgerError as exc:
                if not args.since:
                    raise
                print(f"task {task_id}: cannot verify: {exc}", file=err)
                failed += 1
                continue
            runtime = build_runtime(workflow, settings)
            try:
                result = await verify_events(events, runtime, rerun_models=args.rerun_models)
            finally:
                await runtime.aclose()
            print(result.describe(), file=out if result.ok else err)
            failed += not result.ok
    finally:
        await log.close()
    if args.since and task_ids:
        print(f"{len(task_ids) - failed} of {len(task_ids)} tasks verified", file=out)
    return EXIT_FAILED if failed else EXIT_OK


async def cmd_fork(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.runtime import build_runtime
    from agentledger.evaluation.candidate import parse_model_overrides, with_models
    from agentledger.evaluation.fork import fork_events
    from agentledger.streams.embedded import EmbeddedRunner

    log = open_ledger(args, settings)
    try:
        parent_id = await resolve_task(log, args.task)
        parent = await read_events(log, parent_id, err)
        edits = dict(_read_edit(item) for item in args.edit_output or [])
        overrides = parse_model_overrides(args.model or [])
        workflow = workflow_for(parent, parent_id, args.workflow, settings)
        ref = None
        if args.workflow:
            ref = WorkflowRef(name=workflow.name, path=str(workflow.source), digest=workflow.digest)
        workflow = with_models(workflow, overrides)
        fork = fork_events(parent, args.at, workflow=ref, model_overrides=overrides, edits=edits)
        if fork.fork_seq != args.at:
            print(f"note: fork point moved from seq {args.at} to {fork.fork_seq}", file=err)
        await log.append(fork.events)
        print(
            f"task {fork.task_id}: fork of {parent_id} at seq {fork.fork_seq} — ledger {log.path}",
            file=out,
            flush=True,
        )
        runtime = build_runtime(workflow, settings)
        try:
            state = await EmbeddedRunner(log, runtime).run(fork.task_id)
        finally:
            await runtime.aclose()
    finally:
        await log.close()
    if state.status == "completed":
        print(timeline.render_result(workflow.present(state.result)), file=out)
        print(f"\ntask {state.task_id} completed", file=out)
        return EXIT_OK
    if state.terminal:
        print(f"task {state.task_id} {state.status}: {state.failure}", file=err)
        return EXIT_FAILED
    print(f"task {state.task_id} is {state.status}; see `agentledger status`", file=err)
    return EXIT_UNFINISHED


def _read_edit(item: str) -> tuple[str, Any]:
    subtask, sep, file = item.partition("=")
    if not sep or not subtask or not file:
        raise UsageError(f"--edit-output {item!r} must look like SUBTASK=FILE")
    try:
        text = Path(file).read_text()
    except OSError as exc:
        raise UsageError(f"--edit-output {item!r}: cannot read {file}: {exc.strerror}") from None
    try:
        return subtask, orjson.loads(text)
    except orjson.JSONDecodeError:
        return subtask, text.rstrip("\n")  # not JSON: the output is the text


async def cmd_diff(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.evaluation.diff import diff_runs

    log = open_ledger(args, settings)
    try:
        a = await read_events(log, await resolve_task(log, args.a), err)
        b = await read_events(log, await resolve_task(log, args.b), err)
    finally:
        await log.close()
    diff = diff_runs(a, b)
    if args.json:
        print(orjson.dumps(diff.as_json(), option=orjson.OPT_INDENT_2).decode(), file=out)
    else:
        print(diff.render(), file=out)
    return EXIT_OK


def register(sub: Any) -> None:
    from agentledger.streams.kafka_cli import add_connection_options

    p = sub.add_parser(
        "verify", help="re-run a recorded task's reactions with today's code and compare"
    )
    p.add_argument("task", nargs="?", help="task id (or a unique prefix)")
    p.add_argument("--since", metavar="DATE", help="every task with events since DATE")
    add_connection_options(p, required=False)
    p.add_argument("--workflow", help="workflow file (default: the one each task recorded)")
    p.add_argument(
        "--rerun-models",
        action="store_true",
        help="ask the configured (deterministic, e.g. scripted) models again instead of "
        "answering from the recording",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fork", help="a new task from a task's history up to SEQ, then live")
    p.add_argument("task")
    p.add_argument("--at", type=int, required=True, metavar="SEQ", help="the last seq copied")
    p.add_argument("--workflow", help="continue with this workflow file")
    p.add_argument(
        "--model", action="append", metavar="[AGENT=]MODEL", help="model override (repeatable)"
    )
    p.add_argument(
        "--edit-output",
        action="append",
        metavar="SUBTASK=FILE",
        help="replace a completed subtask's output with FILE (JSON, or text)",
    )
    p.set_defaults(func=cmd_fork)

    p = sub.add_parser("diff", help="compare two runs: outputs, cost, tokens, latency, events")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    register_eval(sub)
    register_shadow(sub)


async def cmd_eval(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    if args.suite == "report":
        if not args.run:
            raise UsageError("eval report needs the run id: agentledger eval report RUN")
        return await _eval_report(args, settings, out, err)
    if args.run:
        raise UsageError(f"unexpected {args.run!r}: agentledger eval SUITE.yaml")
    from agentledger.evaluation.report import build_report
    from agentledger.evaluation.runner import EvalRunner
    from agentledger.evaluation.suite import JudgeScorer, load_suite

    suite = load_suite(args.suite)
    judge_update = {
        k: v for k, v in (("base_url", args.judge_base_url), ("model", args.judge_model)) if v
    }
    if judge_update:
        scorers = [
            s.model_copy(update={"model": s.model.model_copy(update=judge_update)})
            if isinstance(s, JudgeScorer)
            else s
            for s in suite.scorers
        ]
        suite = suite.model_copy(update={"scorers": scorers})
    log = open_ledger(args, settings, create=True)  # an eval run may be the ledger's first
    try:
        runner = EvalRunner(suite, log, settings, concurrency=args.concurrency)
        print(f"eval run {runner.run_id} — suite {suite.name} — ledger {log.path}", file=out)
        run_id = await runner.run()
        events = await read_events(log, run_id, err)
        if args.audit:
            await _sync_audit(log, settings, out)
    finally:
        await log.close()
    report = build_report(events)
    print(report.render(), file=out)
    print(f"\nagentledger eval report {run_id}", file=out)
    return EXIT_OK if report.ok else EXIT_FAILED  # gates CI like `eval report`


async def _sync_audit(log: SqliteEventLog, settings: Settings, out: TextIO) -> None:
    """Catch the ClickHouse audit table up with the ledger (the eval's events included)."""
    from agentledger.audit.cli import default_url
    from agentledger.audit.projection import AuditProjection
    from agentledger.audit.store import AuditStore

    url = settings.clickhouse_url or default_url(log.path)
    with AuditStore.connect(url) as store:
        store.init()
        written = await AuditProjection(log, store).catch_up()
    print(f"audit: wrote {written} rows to {store.location}", file=out)


async def _eval_report(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.evaluation.report import build_report

    log = open_ledger(args, settings)
    try:
        run_id = await resolve_task(log, args.run)
        events = await read_events(log, run_id, err)
    finally:
        await log.close()
    limits = {
        k: v
        for k, v in (
            ("max_pass_rate_drop", args.max_pass_rate_drop),
            ("max_score_drop", args.max_score_drop),
            ("max_cost_increase", args.max_cost_increase),
            ("max_latency_increase", args.max_latency_increase),
        )
        if v is not None
    }
    try:
        report = build_report(events, limits)
    except ValueError as exc:
        raise UsageError(f"{run_id}: {exc}") from None
    if args.json:
        print(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode(), file=out)
    else:
        print(report.render(), file=out)
    return EXIT_OK if report.ok else EXIT_FAILED


def register_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="run an eval suite (eval SUITE.yaml), or compare its variants (eval report RUN)",
    )
    p.add_argument("suite", metavar="SUITE.yaml|report")
    p.add_argument("run", nargs="?", metavar="RUN", help="with `report`: the eval run id")
    p.add_argument("--concurrency", type=int, default=4, help="cases run at once (default 4)")
    p.add_argument("--judge-base-url", help="point every judge at this OpenAI-compatible URL")
    p.add_argument("--judge-model", help="use this model for every judge")
    p.add_argument("--audit", action="store_true", help="then catch the ClickHouse audit table up")
    p.add_argument("--json", action="store_true", help="report: as JSON")
    for name in ("pass-rate-drop", "score-drop", "cost-increase", "latency-increase"):
        p.add_argument(
            f"--max-{name}",
            type=float,
            metavar="X",
            help="report: override the suite's threshold (a fraction: 0.05)",
        )
    p.set_defaults(func=cmd_eval)


def cmd_shadow(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> Any:
    if args.target == "compare":
        return _shadow_compare(args, settings, out, err)
    import asyncio

    from agentledger.agents.runtime import build_runtime
    from agentledger.agents.workflow import load_workflow
    from agentledger.evaluation.candidate import parse_model_overrides, with_models
    from agentledger.evaluation.shadow import PrimaryToolResults, mirroring
    from agentledger.streams.kafka_runner import WorkerConfig, run_worker
    from agentledger.streams.kafka_topics import init_topics

    if args.shadow_prefix == args.prefix:
        raise UsageError("--shadow-prefix must differ from --prefix: the shadow never writes there")
    workflow = with_models(
        load_workflow(args.target, settings=settings), parse_model_overrides(args.model or [])
    )
    asyncio.run(init_topics(args.brokers, args.shadow_prefix, partitions=args.partitions))
    tools = PrimaryToolResults(args.brokers, args.prefix, wait_s=args.tool_wait)
    shadow_workflow = tools.workflow(workflow)
    runtime = build_runtime(shadow_workflow, settings)
    ref = WorkflowRef(name=workflow.name, path=str(workflow.source), digest=workflow.digest)
    config = WorkerConfig(
        args.brokers,
        prefix=args.shadow_prefix,
        session_timeout_s=args.session_timeout,
        fetch_max_wait_ms=args.fetch_wait_ms,
    )
    print(
        f"shadow of {args.prefix}: goals mirrored to {args.shadow_prefix}, tools answered from "
        f"{args.prefix}.events",
        file=out,
        flush=True,
    )
    with mirroring(args.brokers, args.prefix, args.shadow_prefix, ref):
        return run_worker(shadow_workflow, settings, config, out=out, runtime=runtime)


async def _shadow_compare(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.evaluation.report import build_report
    from agentledger.evaluation.shadow import compare_shadow
    from agentledger.streams.kafka import KafkaEventLog

    # committed records only: exactly-once workers leave aborted ones in the topics
    primary = KafkaEventLog(args.brokers, prefix=args.prefix, isolation_level="read_committed")
    shadow = KafkaEventLog(
        args.brokers, prefix=args.shadow_prefix, isolation_level="read_committed"
    )
    ledger = open_ledger(args, settings, create=True)  # the comparison is a new run
    try:
        await primary.start()
        await shadow.start()
        task_ids = args.task or [t.task_id for t in await shadow.tasks(limit=args.limit)]
        run_id = await compare_shadow(
            primary,
            shadow,
            ledger,
            task_ids=task_ids,
            primary_name=args.prefix,
            shadow_name=args.shadow_prefix,
            thresholds={"max_pass_rate_drop": args.max_pass_rate_drop},
        )
        events = await read_events(ledger, run_id, err)
    finally:
        await primary.close()
        await shadow.close()
        await ledger.close()
    report = build_report(events)
    print(report.render(), file=out)
    print(f"\nagentledger eval report {run_id}", file=out)
    return EXIT_OK if report.ok else EXIT_FAILED


def register_shadow(sub: Any) -> None:
    from agentledger.streams.kafka_cli import add_connection_options

    p = sub.add_parser(
        "shadow",
        help="run a candidate workflow on the primary's goals under another prefix, with no "
        "side effects (shadow CANDIDATE.yaml), or compare the two (shadow compare)",
    )
    p.add_argument("target", metavar="CANDIDATE.yaml|compare")
    add_connection_options(p)
    p.add_argument("--shadow-prefix", required=True, help="topic prefix the shadow writes under")
    p.add_argument("--model", action="append", metavar="[AGENT=]MODEL", help="model override")
    p.add_argument("--partitions", type=int, default=4, help="of the shadow's topics")
    p.add_argument(
        "--tool-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="how long a shadow tool call waits for the primary's result (default 60)",
    )
    p.add_argument("--session-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--fetch-wait-ms", type=int, default=100, metavar="MS")
    p.add_argument("--task", action="append", help="compare: these tasks (default: the shadow's)")
    p.add_argument("--limit", type=int, default=100, help="compare: at most this many tasks")
    p.add_argument(
        "--max-pass-rate-drop",
        type=float,
        default=0.0,
        metavar="X",
        help="compare: exit 1 when the shadow agrees with the primary on fewer tasks than "
        "this fraction allows (default 0: any disagreement)",
    )
    p.set_defaults(func=cmd_shadow)
