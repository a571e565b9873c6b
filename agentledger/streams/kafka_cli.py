"""``agentledger`` subcommands for the distributed (Kafka) shape.

::

    agentledger kafka init --brokers B [--prefix P] [--partitions N]
    agentledger kafka check --brokers B [--prefix P] [--fix]
    agentledger worker WORKFLOW --brokers B [--prefix P]
    agentledger submit --brokers B --goal "..." --workflow NAME_OR_FILE [--input k=v]
    agentledger dlq list --brokers B [--json]
    agentledger dlq redrive --brokers B (--all | OFFSET ...)
    agentledger kafka status|events|replay TASK --brokers B

``--brokers`` defaults to ``$AGENTLEDGER_BROKERS``; ``--prefix`` to ``$AGENTLEDGER_PREFIX``
or ``agentledger``. Heavy imports (faust, the workflow loader) happen inside the handlers,
so registering these commands costs every other command nothing.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from agentledger.errors import UsageError
from agentledger.settings import Settings
from agentledger.streams.kafka_topics import DEFAULT_PARTITIONS, DEFAULT_PREFIX

if TYPE_CHECKING:
    from agentledger.streams.kafka import KafkaEventLog

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def add_connection_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--brokers`` and ``--prefix`` on ``p``.

    ``required=True`` (the Kafka-only commands): ``--brokers`` defaults to
    ``$AGENTLEDGER_BROKERS`` and is required without it. ``required=False`` (a command that
    reads SQLite unless told otherwise): no default, so the environment never switches it.
    """
    brokers = os.environ.get("AGENTLEDGER_BROKERS") if required else None
    p.add_argument(
        "--brokers",
        default=brokers,
        required=required and brokers is None,
        metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers"
        + (" (default: $AGENTLEDGER_BROKERS)" if required else "; read the Kafka log"),
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get("AGENTLEDGER_PREFIX", DEFAULT_PREFIX),
        help="topic prefix (default: $AGENTLEDGER_PREFIX or %(default)s)",
    )


async def open_kafka_log(args: argparse.Namespace) -> KafkaEventLog:
    """The started Kafka event log named by ``args.brokers`` and ``args.prefix``. It reads
    committed records only: records of an aborted transaction (an exactly-once worker that
    was fenced or died) are never shown; without transactional writers this changes nothing."""
    from agentledger.streams.kafka import KafkaEventLog

    log = KafkaEventLog(args.brokers, prefix=args.prefix, isolation_level="read_committed")
    await log.start()
    return log


def register(sub: Any) -> None:
    """Add the Kafka subcommands to the ``agentledger`` parser."""
    p = sub.add_parser("kafka", help="the Kafka topic layout; tasks stored on Kafka")
    ksub = p.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    k = ksub.add_parser("init", help="create the goals, events and dead-letter topics")
    add_connection_options(k)
    k.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    k.add_argument("--replication", type=int, default=1)
    k.set_defaults(func=cmd_kafka_init)
    k = ksub.add_parser(
        "check", help="verify the topics' settings (retention, size limit); exit 1 if wrong"
    )
    add_connection_options(k)
    k.add_argument(
        "--fix",
        action="store_true",
        help="give existing topics the durable settings (other topic settings are kept)",
    )
    k.set_defaults(func=cmd_kafka_check)
    for name, helptext in (
        ("status", "a task's state, rebuilt from its events on Kafka"),
        ("events", "a task's events on Kafka, in order"),
        ("replay", "a readable timeline and the state as it was at a point"),
    ):
        k = ksub.add_parser(name, help=helptext)
        add_connection_options(k)
        k.add_argument("task")
        k.add_argument("--json", action="store_true")
        if name == "events":
            k.add_argument("--follow", "-f", action="store_true", help="until the task ends")
        if name == "replay":
            k.add_argument("--until", type=int, metavar="SEQ")
        k.set_defaults(func=cmd_kafka_view, view=name)

    p = sub.add_parser("worker", help="run the processors of a workflow on Kafka")
    p.add_argument("workflow", help="workflow file (YAML or TOML)")
    add_connection_options(p)
    p.add_argument("--session-timeout", type=float, default=10.0, metavar="SECONDS")
    p.add_argument("--fetch-wait-ms", type=int, default=100, metavar="MS")
    p.add_argument("--revoke-grace", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--health-interval", type=float, default=30.0, metavar="SECONDS")
    p.add_argument(
        "--broker-lost-exit",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="exit with code 4 after this long without the broker (0: never; default "
        "%(default)s); health says status=degraded within about a second",
    )
    p.add_argument(
        "--approval-check-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for approval deadlines that passed (default %(default)s)",
    )
    p.add_argument(
        "--consumer",
        choices=("faust", "aiokafka"),
        default=None,
        help="the consumer group runtime: a bare aiokafka group on the worker's own loop "
        "(default: no consumer thread hand-off, 1.2-2.6x the steps/s of faust in "
        "benchmarks/bench_kafka.py), or faust (docs/kafka.md)",
    )
    p.add_argument(
        "--exactly-once",
        action="store_true",
        help="consume, react, produce and commit offsets in Kafka transactions, reading "
        "committed data only (needs a broker with transactions; implies --consumer aiokafka; "
        'docs/kafka.md, "Exactly-once")',
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("submit", help="submit a goal to the workers; prints the task id")
    add_connection_options(p)
    p.add_argument("--goal", required=True)
    p.add_argument("--workflow", required=True, help="workflow file or workflow name")
    p.add_argument("--input", action="append", metavar="KEY=VALUE")
    p.add_argument("--task-id", help="choose the task id (default: a new one)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("dlq", help="records parked on the dead-letter topic")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    d = dsub.add_parser("list", help="list dead letters, oldest first")
    add_connection_options(d)
    d.add_argument("--limit", type=int)
    d.add_argument("--json", action="store_true", help="one JSON object per line")
    d.set_defaults(func=cmd_dlq_list)
    d = dsub.add_parser("redrive", help="produce dead letters to their source topic again")
    add_connection_options(d)
    d.add_argument("offsets", nargs="*", type=int, metavar="OFFSET", help="dead-letter offsets")
    d.add_argument("--all", action="store_true", help="every dead letter")
    d.set_defaults(func=cmd_dlq_redrive)


def _inputs(items: list[str] | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--input {item!r} must look like key=value")
        inputs[key] = value
    return inputs


async def cmd_kafka_init(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.streams.kafka_topics import init_topics

    names = await init_topics(
        args.brokers, args.prefix, partitions=args.partitions, replication=args.replication
    )
    print(f"topics ready on {args.brokers}: {', '.join(names)}", file=out)
    return EXIT_OK


async def cmd_kafka_check(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    """Exit 0 when the layout's topics exist with settings that keep the log; else 1."""
    from agentledger.streams.kafka_topics import TOPIC_SETTINGS, check_topics, repair_topics

    problems = await check_topics(args.brokers, args.prefix)
    if problems and args.fix:
        for change in await repair_topics(args.brokers, args.prefix):
            print(f"changed: {change}", file=out)
        problems = await check_topics(args.brokers, args.prefix)
    for problem in problems:
        print(f"problem: {problem}", file=out)
    if problems:
        return EXIT_PROBLEM
    wanted = ", ".join(f"{k}={v}" for k, v in TOPIC_SETTINGS.items() if k != "max.message.bytes")
    print(f"topics under prefix {args.prefix!r} on {args.brokers} are durable ({wanted})", file=out)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.agents.workflow import load_workflow
    from agentledger.streams.kafka_runner import WorkerConfig, run_worker

    if args.exactly_once and args.consumer == "faust":
        raise UsageError(
            "--exactly-once runs on the aiokafka consumer (faust commits offsets on its own, "
            "outside the transactions); drop --consumer faust or use --consumer aiokafka"
        )
    consumer = args.consumer or "aiokafka"
    workflow = load_workflow(args.workflow, settings=settings)
    config = WorkerConfig(
        args.brokers,
        prefix=args.prefix,
        session_timeout_s=args.session_timeout,
        fetch_max_wait_ms=args.fetch_wait_ms,
        revoke_grace_s=args.revoke_grace,
        shutdown_timeout_s=args.shutdown_timeout,
        health_interval_s=args.health_interval,
        approval_check_interval_s=args.approval_check_interval,
        broker_lost_exit_s=args.broker_lost_exit,
        log_level="DEBUG" if getattr(args, "verbose", False) else "WARN",
        consumer=consumer,
        exactly_once=args.exactly_once,
    )
    return run_worker(workflow, settings, config, out=out)


async def cmd_submit(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.streams.kafka_runner import submit_goal, workflow_ref

    ref = workflow_ref(args.workflow, settings)
    task_id = await submit_goal(
        args.brokers,
        args.goal,
        workflow=ref,
        prefix=args.prefix,
        inputs=_inputs(args.input),
        task_id=args.task_id,
        submitted_by="cli",
    )
    print(task_id, file=out)
    return EXIT_OK


async def cmd_dlq_list(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.streams.kafka_dlq import read_dead_letters
    from agentledger.streams.kafka_topics import TopicLayout

    letters = await read_dead_letters(args.brokers, TopicLayout(args.prefix).dlq, limit=args.limit)
    for letter in letters:
        where = f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
        if args.json:
            row = {
                "offset": letter.offset,
                "partition": letter.partition,
                "key": None if letter.key is None else letter.key.decode("utf-8", "replace"),
                "reason": letter.reason,
                "source_topic": letter.source_topic,
                "source_partition": letter.source_partition,
                "source_offset": letter.source_offset,
                "failed_at": None if letter.failed_at is None else letter.failed_at.isoformat(),
                "bytes": None if letter.value is None else len(letter.value),
            }
            print(orjson.dumps(row).decode(), file=out)
        else:
            key = "-" if letter.key is None else letter.key.decode("utf-8", "replace")
            print(f"{letter.offset:>6}  {where}  key={key}  {letter.reason}", file=out)
    if not letters:
        print("no dead letters", file=err)
    return EXIT_OK


async def cmd_dlq_redrive(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    from agentledger.streams.kafka_clients import event_producer
    from agentledger.streams.kafka_dlq import read_dead_letters, redrive
    from agentledger.streams.kafka_topics import TopicLayout

    if not args.all and not args.offsets:
        raise UsageError("name the dead-letter offsets to re-drive, or pass --all")
    letters = await read_dead_letters(args.brokers, TopicLayout(args.prefix).dlq)
    chosen = letters if args.all else [x for x in letters if x.offset in set(args.offsets)]
    unknown = set(args.offsets) - {x.offset for x in letters}
    if unknown:
        raise UsageError(
            f"no dead letters at offsets {sorted(unknown)}; see `agentledger dlq list`"
        )
    producer = event_producer(args.brokers, client_id="agentledger-redrive")
    await producer.start()
    try:
        for letter in chosen:
            placed = await redrive(producer, letter)
            print(
                f"re-drove {letter.offset} to {placed.topic}[{placed.partition}]@{placed.offset}",
                file=out,
            )
    finally:
        await producer.stop()
    return EXIT_OK


async def cmd_kafka_view(
    args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO
) -> int:
    """``status``/``events``/``replay`` of the embedded CLI, reading the Kafka log."""
    from agentledger.cli import _resolve_task, _split, print_events, print_replay, print_status
    from agentledger.projections.task_state import fold

    async with await open_kafka_log(args) as log:
        task_id = await _resolve_task(log, args.task)
        entries = await log.read_task(task_id)
        if args.view == "events":
            await print_events(log, task_id, entries, args, out, err)
            return EXIT_OK
    events = _split(entries, err)
    if args.view == "status":
        print_status(fold(task_id, events), args.json, out)
    else:
        print_replay(task_id, events, args.until, args.json, out)
    return EXIT_OK
