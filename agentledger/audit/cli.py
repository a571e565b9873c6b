"""CLI commands: ``audit init|sync|rebuild|project``, ``analytics cost|failures|latency|anomalies``
and ``sql``. The main CLI calls ``register(subparsers)``; each handler is ``func(args) -> int``.

Where the audit lives: ``--clickhouse URL``, else ``AGENTLEDGER_CLICKHOUSE_URL``, else the
embedded engine in ``audit.chdb`` beside the ledger (``--db``). In the embedded shape every
command first catches the audit table up with the ledger (``--no-sync`` skips that); a
server is fed by its projector, so commands only read it (``audit sync`` writes to it
explicitly).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
import threading
from collections.abc import Coroutine, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import orjson

from agentledger.audit import analytics
from agentledger.audit.projection import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GROUP,
    AuditKafkaProjector,
    AuditProjection,
)
from agentledger.audit.store import AuditStore, Table
from agentledger.cli_input import utc_time_type
from agentledger.errors import AgentLedgerError, UsageError

__all__ = ["default_url", "main", "register", "render"]

T = TypeVar("T")


def default_url(ledger: Path) -> str:
    """The embedded audit store of a ledger: ``chdb://<ledger dir>/audit.chdb``."""
    return f"chdb://{quote(str(ledger.resolve().parent / 'audit.chdb'))}"


def _ledger(args: argparse.Namespace) -> Path:
    db = getattr(args, "db", None)
    if db:
        return Path(db)
    from agentledger.settings import Settings  # only when the main CLI did not say

    return Settings().ledger_path


def _url(args: argparse.Namespace) -> str:
    return (
        args.clickhouse
        or os.environ.get("AGENTLEDGER_CLICKHOUSE_URL")
        or default_url(_ledger(args))
    )


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from a sync handler, even when the caller already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="agentledger-audit-sync")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


async def _sync(store: AuditStore, ledger: Path, *, rebuild: bool, truncate: bool = False) -> int:
    from agentledger.streams.sqlite import SqliteEventLog

    log = SqliteEventLog(ledger)
    try:
        projection = AuditProjection(log, store)
        if rebuild:
            return await projection.rebuild(truncate=truncate)
        return await projection.catch_up(DEFAULT_BATCH_SIZE)
    finally:
        await log.close()


def _open(args: argparse.Namespace, *, sync: bool) -> AuditStore:
    url = _url(args)
    store = AuditStore.connect(url, database=args.database, lock_timeout=args.lock_timeout)
    try:
        embedded = url.startswith("chdb:")
        if embedded:
            store.init()
        elif not store.exists():
            raise UsageError(
                f"no audit tables in database {store.database!r} at {store.location}; "
                "run `agentledger audit init --clickhouse URL` first"
            )
        store.client.database = store.database
        ledger = _ledger(args)
        if sync and embedded and not args.no_sync and ledger.exists():
            _run(_sync(store, ledger, rebuild=False))
    except BaseException:
        store.close()
        raise
    return store


# -- output ---------------------------------------------------------------------------------


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if column.endswith("_usd"):
            return f"{value:.6f}"
        if column.endswith("rate"):
            return f"{value:.2%}"
        return f"{value:.1f}" if column.endswith("_ms") else f"{value:.3f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def _text(table: Table) -> str:
    if not table.rows:
        return "(no rows)"
    cells = [[_cell(c, v) for c, v in zip(table.columns, row, strict=True)] for row in table.rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(table.columns)]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in table.rows)
        for i in range(len(table.columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(table.columns), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def render(table: Table, fmt: str) -> str:
    """``table`` as an aligned text table, a JSON array of objects, or CSV with a header."""
    if fmt == "json":
        return orjson.dumps(
            table.dicts(), default=_json_default, option=orjson.OPT_INDENT_2
        ).decode()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow(
                [
                    v.isoformat() if isinstance(v, datetime) else ("" if v is None else v)
                    for v in row
                ]
            )
        return buffer.getvalue().rstrip("\n")
    return _text(table)


def _emit(args: argparse.Namespace, table: Table) -> None:
    print(render(table, args.format))


# -- handlers -------------------------------------------------------------------------------


def _audit_init(args: argparse.Namespace) -> int:
    store = AuditStore.connect(_url(args), database=args.database, lock_timeout=args.lock_timeout)
    with store:
        store.init(retention_days=args.retention_days)
        print(f"audit tables ready in {store.location} (database {store.database})")
    return 0


def _audit_sync(args: argparse.Namespace) -> int:
    return _write(args, rebuild=False)


def _audit_rebuild(args: argparse.Namespace) -> int:
    return _write(args, rebuild=True)


def _write(args: argparse.Namespace, *, rebuild: bool) -> int:
    ledger = _ledger(args)
    if not ledger.exists():
        raise UsageError(f"no ledger at {ledger}; pass --db PATH")
    store = AuditStore.connect(_url(args), database=args.database, lock_timeout=args.lock_timeout)
    with store:
        store.init()
        truncate = bool(getattr(args, "truncate", False))
        written = _run(_sync(store, ledger, rebuild=rebuild, truncate=truncate))
        position = store.get_position("ledger")
        print(f"wrote {written} audit rows; {store.location} is at ledger offset {position}")
    return 0


def _audit_project(args: argparse.Namespace) -> int:
    url = _url(args)
    store = AuditStore.connect(url, database=args.database, lock_timeout=args.lock_timeout)
    with store:
        store.init()
        projector = AuditKafkaProjector(
            store, args.kafka, topic=f"{args.prefix}.events", group_id=args.group
        )
        print(
            f"projecting {projector.topic} on {args.kafka} into {store.location} "
            f"(group {args.group})",
            file=sys.stderr,
        )
        written = _run(projector.run(until_caught_up=args.until_caught_up))
        print(f"wrote {written} audit rows")
    return 0


def _analytics(args: argparse.Namespace) -> int:
    with _open(args, sync=True) as store:
        span = {"since": args.since, "until": args.until}
        table: Table
        if args.analytics_command == "cost":
            table = analytics.to_table(analytics.cost(store, args.by, **span), analytics.CostRow)
        elif args.analytics_command == "failures":
            rows = analytics.failures(store, args.by, **span)
            table = analytics.to_table(rows, analytics.FailureRow)
            if args.by != "error":
                table = Table(table.columns[:-1], [r[:-1] for r in table.rows])
        elif args.analytics_command == "latency":
            dims = args.by or ["agent", "model", "tool"]
            table = analytics.to_table(analytics.latency(store, dims, **span), analytics.LatencyRow)
        else:
            thresholds = analytics.AnomalyThresholds(
                tool_factor=args.tool_factor,
                tool_min_calls=args.tool_min_calls,
                slow_factor=args.slow_factor,
                min_runs=args.min_runs,
                error_rate=args.error_rate,
                error_window_minutes=args.window_minutes,
                error_min_outcomes=args.min_outcomes,
            )
            found = analytics.anomalies(store, thresholds=thresholds, **span)
            table = analytics.to_table(found, analytics.AnomalyRow)
        _emit(args, table)
    return 0


def _sql(args: argparse.Namespace) -> int:
    with _open(args, sync=True) as store:
        _emit(args, analytics.run_sql(store, args.query))
    return 0


# -- parser ---------------------------------------------------------------------------------


def _store_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--clickhouse",
        metavar="URL",
        help="chdb:///abs/dir or http(s)://user:pass@host:port/db "
        "(default: $AGENTLEDGER_CLICKHOUSE_URL, else audit.chdb beside the ledger)",
    )
    common.add_argument("--database", help="ClickHouse database (default: agentledger)")
    common.add_argument(
        "--lock-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for another process using the embedded store (default 5)",
    )
    return common


def _read_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--format", choices=("table", "json", "csv"), default="table")
    common.add_argument(
        "--no-sync", action="store_true", help="do not catch up with the ledger first"
    )
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit``, ``analytics`` and ``sql`` to a CLI's subcommands."""
    store_opts, read_opts = _store_options(), _read_options()
    span = argparse.ArgumentParser(add_help=False)
    span.add_argument("--since", type=utc_time_type, help="from this UTC date/time (inclusive)")
    span.add_argument("--until", type=utc_time_type, help="up to this UTC date/time (exclusive)")

    audit = subparsers.add_parser("audit", help="the ClickHouse audit table")
    audit_cmds = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    init = audit_cmds.add_parser("init", parents=[store_opts], help="create the audit tables")
    init.add_argument(
        "--retention-days", type=int, help="keep rows this many days (0 = forever; default 365)"
    )
    init.set_defaults(func=_audit_init)
    sync = audit_cmds.add_parser("sync", parents=[store_opts], help="write new ledger events")
    sync.set_defaults(func=_audit_sync)
    rebuild = audit_cmds.add_parser(
        "rebuild", parents=[store_opts], help="write the whole ledger again from offset 0"
    )
    rebuild.add_argument("--truncate", action="store_true", help="empty the table first")
    rebuild.set_defaults(func=_audit_rebuild)
    project = audit_cmds.add_parser(
        "project",
        parents=[store_opts],
        help="the distributed shape: consume the Kafka events topic into the audit table",
    )
    project.add_argument("--kafka", required=True, metavar="BOOTSTRAP", help="host:port,...")
    project.add_argument("--prefix", default="agentledger", help="topic prefix (<prefix>.events)")
    project.add_argument("--group", default=DEFAULT_GROUP, help="consumer group id")
    project.add_argument(
        "--until-caught-up", action="store_true", help="stop once nothing is left to read"
    )
    project.set_defaults(func=_audit_project)

    parents = [store_opts, read_opts, span]
    an = subparsers.add_parser("analytics", help="cost, failures, latency and anomalies")
    an_cmds = an.add_subparsers(dest="analytics_command", metavar="COMMAND", required=True)
    cost = an_cmds.add_parser("cost", parents=parents, help="LLM spend and tokens")
    cost.add_argument("--by", choices=("task", "agent", "model", "workflow", "day"), default="task")
    fail = an_cmds.add_parser("failures", parents=parents, help="failure counts and rates")
    fail.add_argument("--by", choices=("agent", "tool", "error"), default="agent")
    lat = an_cmds.add_parser("latency", parents=parents, help="p50/p95/p99 call latency")
    lat.add_argument(
        "--by", action="append", choices=("agent", "model", "tool"), help="repeatable (default all)"
    )
    anom = an_cmds.add_parser("anomalies", parents=parents, help="runs that behave abnormally")
    defaults = analytics.AnomalyThresholds()
    anom.add_argument("--tool-factor", type=float, default=defaults.tool_factor)
    anom.add_argument("--tool-min-calls", type=int, default=defaults.tool_min_calls)
    anom.add_argument("--slow-factor", type=float, default=defaults.slow_factor)
    anom.add_argument("--min-runs", type=int, default=defaults.min_runs)
    anom.add_argument("--error-rate", type=float, default=defaults.error_rate)
    anom.add_argument("--window-minutes", type=int, default=defaults.error_window_minutes)
    anom.add_argument("--min-outcomes", type=int, default=defaults.error_min_outcomes)
    for command in (cost, fail, lat, anom):
        command.set_defaults(func=_analytics)

    sql = subparsers.add_parser(
        "sql", parents=[store_opts, read_opts], help="ad-hoc SQL over the audit table"
    )
    sql.add_argument("query", help='e.g. "SELECT type, count() FROM audit_events GROUP BY type"')
    sql.set_defaults(func=_sql)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m agentledger.audit.cli --db ledger.db ...``."""
    parser = argparse.ArgumentParser(prog="agentledger-audit")
    parser.add_argument("--db", help="the SQLite ledger (default: $AGENTLEDGER_DB or .agentledger)")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except AgentLedgerError as exc:
        # The same exit codes as the main CLI: 2 for misuse, 1 for a failure.
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    return result


if __name__ == "__main__":
    sys.exit(main())
