"""Throughput and per-hop latency of the distributed workers on Apache Kafka.

Runs the deliveries workflow (tests/fixtures/deliveries: a plan, three couriers each
calling a side-effecting tool, a report; 43 events per task) with its scripted model at
zero latency, so the figures are the transport's: produce, fetch, dispatch, fold. For each
setting it starts fresh topics and N `agentledger worker` processes, submits ``--in-flight``
tasks at once (default: all of them, a burst), then one more as each task completes until
``--tasks`` were submitted (a steady state of ``--in-flight`` tasks), and follows the events
topic with one consumer until every task_completed has been read.

- steps/s: agent steps (agent_step_started events) and events per second, from the first
  goal's occurred_at to the last task_completed's. The target of issue #13 is on steps/s
  (a task is 43 events and 5 agent steps). With ``--in-flight`` below ``--tasks``, the
  "steady" columns count only what happened while ``--in-flight`` tasks were kept running
  (from the first task_completed to the one after which no goal was left to submit), so
  the start-up of the first tasks and the drain of the last are left out.
- hop latency: for every event, its occurred_at minus the occurred_at of the event that
  caused it (a produce, a fetch by the owning worker, the dispatch, the reaction). The
  first hop of a task (goal_submitted -> subtask_assigned) is reported apart as "start":
  it also crosses the goals topic and pays two full reads of the task's partition (the
  duplicate check and the rebuild on first sight).

    python benchmarks/bench_kafka.py                       # starts Apache Kafka itself
    python benchmarks/bench_kafka.py --brokers 127.0.0.1:9092 --tasks 50 --workers 1,2,4
    python benchmarks/bench_kafka.py --exactly-once          # workers in Kafka transactions
    python benchmarks/bench_kafka.py --tasks 300 --in-flight 50     # steady state
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support (the broker helper) lives in the repo

from agentledger.schemas import Event  # noqa: E402
from agentledger.streams import Recorded  # noqa: E402
from agentledger.streams.kafka import KafkaEventLog  # noqa: E402
from agentledger.streams.kafka_runner import submit_goal  # noqa: E402
from agentledger.streams.kafka_submit import workflow_ref  # noqa: E402
from agentledger.streams.kafka_topics import init_topics  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "deliveries" / "workflow.yaml"


@dataclass
class Result:
    workers: int
    fetch_wait_ms: int
    tasks: int
    in_flight: int
    events: int
    steps: int
    seconds: float
    hops_ms: list[float]
    starts_ms: list[float]
    steady: tuple[int, int, float] | None  # (steps, events, seconds) while in_flight ran
    events_seen: list[Event]  # each id once (bench_hop_trace.py places them in its trace)

    def shapes(self) -> str:
        """Hop p50 split by what else the task was doing: a task's parallel branches
        append one at a time (its driver's lock), so their hops also wait for a sibling's
        append, and the overall p50 of a lone task jumps between the two groups."""
        lone, branches = _hop_shapes(self.events_seen)
        parts = [
            f"{name} p50 {statistics.median(values):.1f} ms ({len(values)} hops)"
            for name, values in (("one branch", lone), ("parallel branches", branches))
            if values
        ]
        return "        hop by shape: " + "; ".join(parts)

    def row(self) -> str:
        hop50, hop99 = _percentiles(self.hops_ms)
        start50, start99 = _percentiles(self.starts_ms)
        steady = "-".rjust(8) + " " + "-".rjust(8)
        if self.steady is not None and self.steady[2] > 0:
            steps, events, seconds = self.steady
            steady = f"{steps / seconds:>8.1f} {events / seconds:>8.1f}"
        return (
            f"{self.workers:>7} {self.fetch_wait_ms:>9} {self.tasks:>5} {self.in_flight:>6} "
            f"{self.events:>6} {self.seconds:>7.2f} {self.steps / self.seconds:>8.1f} "
            f"{self.events / self.seconds:>8.1f} {steady} {hop50:>8.1f} {hop99:>8.1f} "
            f"{start50:>9.1f} {start99:>9.1f}"
        )


def _hop_shapes(events: list[Event]) -> tuple[list[float], list[float]]:
    """Hops (ms, first hops left out) whose cause came while its task had at most one
    subtask open, and those while it had several (parallel branches)."""
    by_id = {e.event_id: e for e in events}
    open_at: dict[str, int] = {}  # event id -> subtasks of its task open when it occurred
    open_now: dict[str, set[str]] = {}
    for e in sorted(events, key=lambda e: (e.task_id, e.seq)):
        subtasks = open_now.setdefault(e.task_id, set())
        subtask = getattr(e, "subtask_id", None)
        if e.type == "subtask_assigned" and subtask:
            subtasks.add(subtask)
        open_at[e.event_id] = len(subtasks)
        if e.type in ("subtask_completed", "subtask_failed") and subtask:
            subtasks.discard(subtask)
    lone: list[float] = []
    branches: list[float] = []
    for e in events:
        cause = by_id.get(e.causation_id or "")
        if cause is None or cause.type == "goal_submitted":
            continue
        ms = (e.occurred_at - cause.occurred_at).total_seconds() * 1000
        (branches if open_at[cause.event_id] > 1 else lone).append(ms)
    return lone, branches


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


HEADER = (
    f"{'workers':>7} {'fetch ms':>9} {'tasks':>5} {'flight':>6} {'events':>6} {'secs':>7} "
    f"{'steps/s':>8} {'events/s':>8} {'steady':>8} {'steady':>8} {'hop p50':>8} "
    f"{'hop p99':>8} {'start p50':>9} {'start p99':>9}\n"
    f"{'':>7} {'':>9} {'':>5} {'':>6} {'':>6} {'':>7} {'':>8} {'':>8} {'steps/s':>8} "
    f"{'events/s':>8}"
)


def _assigned(path: Path) -> set[int] | None:
    text = path.read_text() if path.exists() else ""
    found = re.findall(r"worker assigned: .* events=\[([\d,]*)\]", text)
    return {int(p) for p in found[-1].split(",") if p} if found else None


async def _drive(
    bootstrap: str, prefix: str, tasks: int, in_flight: int
) -> tuple[list[Event], float | None]:
    """Submit ``in_flight`` goals, then one per task_completed until ``tasks`` were
    submitted; follow the events topic (one consumer, decoded once) until every task
    completed. Returns the events (each id once) and when the last goal was submitted
    for a completion (the end of the steady window; None for a burst)."""
    ref = workflow_ref(FIXTURE)
    submitting: set[asyncio.Task[str]] = set()

    def submit(n: int) -> None:
        task = asyncio.ensure_future(
            submit_goal(bootstrap, f"bench {n}", workflow=ref, prefix=prefix)
        )
        submitting.add(task)
        task.add_done_callback(submitting.discard)

    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        await asyncio.gather(
            *(
                submit_goal(bootstrap, f"bench {n}", workflow=ref, prefix=prefix)
                for n in range(in_flight)
            )
        )
        submitted, done = in_flight, 0
        steady_end: float | None = None
        seen: dict[str, Event] = {}
        async with asyncio.timeout(300), contextlib.aclosing(log.follow(0)) as entries:
            async for entry in entries:
                if not isinstance(entry, Recorded) or entry.event.event_id in seen:
                    continue
                seen[entry.event.event_id] = entry.event
                if entry.event.type != "task_completed":
                    continue
                done += 1
                if submitted < tasks:
                    submit(submitted)
                    submitted += 1
                    if submitted == tasks:
                        steady_end = entry.event.occurred_at.timestamp()
                if done >= tasks:
                    break
        await asyncio.gather(*submitting)
    return list(seen.values()), steady_end


def run(
    bootstrap: str,
    workers: int,
    fetch_wait_ms: int,
    tasks: int,
    partitions: int,
    consumer: str = "aiokafka",
    in_flight: int | None = None,
    exactly_once: bool = False,
    worker: Sequence[str] = ("-m", "agentledger.cli"),
) -> Result:
    """One setting; ``worker`` is what follows the interpreter in each worker's command
    line, before ``worker FIXTURE ...`` (bench_hop_trace.py runs traced workers)."""
    in_flight = min(tasks, in_flight or tasks)
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    asyncio.run(init_topics(bootstrap, prefix, partitions=partitions))
    with tempfile.TemporaryDirectory() as home, ExitStack() as stack:
        env = {**os.environ, "AGENTLEDGER_HOME": home, "DELIVERIES_MODEL_DELAY": "0"}
        procs: list[subprocess.Popen[bytes]] = []
        outs: list[Path] = []
        try:
            for i in range(workers):
                out = Path(home) / f"worker{i}.out"
                outs.append(out)
                fh = stack.enter_context(out.open("wb"))
                err = stack.enter_context((Path(home) / f"worker{i}.err").open("wb"))
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            *worker,
                            "worker",
                            str(FIXTURE),
                            "--brokers",
                            bootstrap,
                            "--prefix",
                            prefix,
                            "--session-timeout",
                            "3",
                            "--fetch-wait-ms",
                            str(fetch_wait_ms),
                            "--consumer",
                            consumer,
                            *(("--exactly-once",) if exactly_once else ()),
                        ],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=fh,
                        stderr=err,
                    )
                )
            deadline = time.monotonic() + 60
            while True:
                held = [_assigned(o) for o in outs]
                if all(held) and sum(len(h or ()) for h in held) == partitions:
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise SystemExit("workers did not start; see their output in " + home)
                time.sleep(0.1)

            try:
                events, steady_end = asyncio.run(_drive(bootstrap, prefix, tasks, in_flight))
            except TimeoutError:
                raise SystemExit(f"not all {tasks} tasks finished within 300 s") from None
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    by_id = {e.event_id: e for e in events}
    hops: list[float] = []
    starts: list[float] = []
    for e in events:
        cause = by_id.get(e.causation_id or "")
        if cause is not None:
            ms = (e.occurred_at - cause.occurred_at).total_seconds() * 1000
            (starts if cause.type == "goal_submitted" else hops).append(ms)
    start = min(e.occurred_at for e in events if e.type == "goal_submitted")
    end = max(e.occurred_at for e in events if e.type == "task_completed")
    steady = None
    if steady_end is not None:
        first_done = min(e.occurred_at for e in events if e.type == "task_completed")
        window = [
            e for e in events if first_done.timestamp() <= e.occurred_at.timestamp() <= steady_end
        ]
        steady = (
            sum(1 for e in window if e.type == "agent_step_started"),
            len(window),
            steady_end - first_done.timestamp(),
        )
    return Result(
        workers=workers,
        fetch_wait_ms=fetch_wait_ms,
        tasks=tasks,
        in_flight=in_flight,
        events=len(events),
        steps=sum(1 for e in events if e.type == "agent_step_started"),
        seconds=(end - start).total_seconds(),
        hops_ms=hops,
        starts_ms=starts,
        steady=steady,
        events_seen=events,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--brokers", help="an existing broker (default: start Apache Kafka here, one KRaft node)"
    )
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="tasks kept running at once (default: all --tasks, submitted in one burst)",
    )
    parser.add_argument("--workers", default="1,2", help="worker counts to try")
    parser.add_argument("--fetch-wait-ms", default="100", help="fetch waits to try")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--consumer", choices=("faust", "aiokafka"), default="aiokafka")
    parser.add_argument(
        "--exactly-once",
        action="store_true",
        help="workers run with --exactly-once (transactions; implies --consumer aiokafka)",
    )
    args = parser.parse_args()
    if args.exactly_once:
        args.consumer = "aiokafka"  # the only consumer exactly-once runs on
    counts = [int(x) for x in args.workers.split(",")]
    waits = [int(x) for x in args.fetch_wait_ms.split(",")]

    with ExitStack() as stack:
        bootstrap = args.brokers
        if bootstrap is None:
            from tests.support.kafka_broker import running_broker

            bootstrap = stack.enter_context(running_broker()).bootstrap
        flight = args.in_flight or args.tasks
        print(
            f"deliveries workflow, zero-latency model, {args.tasks} tasks, {flight} in flight, "
            f"{args.partitions} partitions, broker {bootstrap}, consumer {args.consumer}"
            + (", exactly-once" if args.exactly_once else "")
        )
        print(HEADER)
        for wait in waits:
            for n in counts:
                result = run(
                    bootstrap,
                    n,
                    wait,
                    args.tasks,
                    args.partitions,
                    args.consumer,
                    args.in_flight,
                    exactly_once=args.exactly_once,
                )
                print(result.row(), flush=True)
                print(result.shapes(), flush=True)
        print(
            "note: each hop is a produce plus a fetch; Apache Kafka answers a waiting fetch as "
            "soon as data arrives (fetch.min.bytes=1), so fetch_max_wait_ms bounds only idle "
            "polls, not hops"
        )


if __name__ == "__main__":
    main()
