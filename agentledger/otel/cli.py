"""``agentledger otel export TASK | --since DATE`` and ``agentledger otel follow``.

::

    agentledger otel export TASK [--endpoint URL] [--content]
    agentledger otel export --since 2026-11-01 [--endpoint URL]
    agentledger otel follow [--from-start] [--endpoint URL]

``--endpoint`` is the OTLP/HTTP traces URL (``http://localhost:4318/v1/traces``); without
it the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``
apply. ``--brokers`` reads the Kafka log instead of the SQLite ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Any, TextIO

from agentledger.cli_input import utc_time
from agentledger.errors import UsageError
from agentledger.settings import Settings
from agentledger.streams.log import EventLog

EXIT_OK = 0


def register(sub: Any) -> None:
    from agentledger.streams.kafka_cli import add_connection_options

    p = sub.add_parser("otel", help="OpenTelemetry spans computed from the log")
    osub = p.add_subparsers(dest="otel_command", required=True, metavar="ACTION")
    e = osub.add_parser("export", help="export the spans of a task, or of tasks since a date")
    e.add_argument("task", nargs="?", help="task id (a unique prefix works)")
    e.add_argument("--since", help="every task submitted at or after this date/time (UTC)")
    f = osub.add_parser("follow", help="export spans live as the log grows (Ctrl-C stops)")
    f.add_argument(
        "--from-start", action="store_true", help="export the whole log first, not only new events"
    )
    for q in (e, f):
        q.add_argument("--endpoint", help="OTLP/HTTP traces URL (default: OTEL_EXPORTER_OTLP_* )")
        q.add_argument(
            "--content",
            action="store_true",
            help="include prompts, responses, tool arguments and results (masked)",
        )
        q.add_argument("--service-name", default="agentledger")
        q.add_argument(
            "--resource",
            action="append",
            metavar="KEY=VALUE",
            help="extra resource attribute, e.g. openinference.project.name=agents",
        )
        add_connection_options(q, required=False)
    e.set_defaults(func=cmd_export)
    f.set_defaults(func=cmd_follow)


def _sender(args: argparse.Namespace) -> Any:
    from agentledger.otel.export import SpanSender

    attrs: dict[str, str] = {}
    for item in args.resource or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--resource {item!r} must look like key=value")
        attrs[key] = value
    return SpanSender(args.endpoint, service_name=args.service_name, resource_attributes=attrs)


async def _log(args: argparse.Namespace, settings: Settings) -> EventLog:
    if args.brokers:
        from agentledger.streams.kafka_cli import open_kafka_log

        return await open_kafka_log(args)
    from agentledger.cli_ledger import open_ledger

    return open_ledger(args, settings)


async def cmd_export(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.otel.follow import export_since, export_task

    if bool(args.task) == bool(args.since):
        raise UsageError("name a TASK or pass --since DATE (one of the two)")
    since = utc_time(args.since, "--since") if args.since else None
    sender = _sender(args)
    log = await _log(args, settings)
    try:
        if since is not None:
            tasks, spans = await export_since(log, since, sender, content=args.content)
            print(f"exported {spans} spans of {tasks} tasks since {since:%Y-%m-%d %H:%M}", file=out)
        else:
            from agentledger.cli_ledger import resolve_task

            task_id = await resolve_task(log, args.task)
            spans = await export_task(log, task_id, sender, content=args.content)
            print(f"exported {spans} spans of task {task_id}", file=out)
    finally:
        await log.close()
        sender.close()
    return EXIT_OK


async def cmd_follow(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.otel.follow import follow

    sender = _sender(args)
    log = await _log(args, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print("exporting spans as the log grows; Ctrl-C stops", file=out, flush=True)
    try:
        sent = await follow(
            log, sender, content=args.content, from_start=args.from_start, stop=stop
        )
    finally:
        await log.close()
        sender.close()
    print(f"exported {sent} spans", file=out)
    return EXIT_OK
