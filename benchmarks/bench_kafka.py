"""Throughput and per-hop latency of the distributed workers on Apache Kafka.

Runs the deliveries workflow (tests/fixtures/deliveries: a plan, three couriers each
calling a side-effecting tool, a report; 43 events per task) with its scripted model at
zero latency, so the figures are the transport's: produce, fetch, dispatch, fold. For each
setting it starts fresh topics and N `agentledger worker` processes, submits all tasks at
once and waits for every task_completed.

- steps/s: agent steps (agent_step_started events) and events per second, from the first
  goal's occurred_at to the last task_completed's.
- hop latency: for every event, its occurred_at minus the occurred_at of the event that
  caused it (a produce, a fetch by the owning worker, the dispatch, the reaction). The
  first hop of a task (goal_submitted -> subtask_assigned) is reported apart as "start":
  it also crosses the goals topic and pays two full reads of the task's partition (the
  duplicate check and the rebuild on first sight).

    python benchmarks/bench_kafka.py                       # starts Apache Kafka itself
    python benchmarks/bench_kafka.py --brokers 127.0.0.1:9092 --tasks 50 --workers 1,2,4
    python benchmarks/bench_kafka.py --exactly-once          # workers in Kafka transactions
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support (the broker helper) lives in the repo

from agentledger.schemas import Event  # noqa: E402
from agentledger.streams import Recorded  # noqa: E402
from agentledger.streams.kafka import KafkaEventLog  # noqa: E402
from agentledger.streams.kafka_runner import submit_goal  # noqa: E402
from agentledger.streams.kafka_topics import init_topics  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "deliveries" / "workflow.yaml"


@dataclass
class Result:
    workers: int
    fetch_wait_ms: int
    tasks: int
    events: int
    steps: int
    seconds: float
    hops_ms: list[float]
    starts_ms: list[float]

    def row(self) -> str:
        hop50, hop99 = _percentiles(self.hops_ms)
        start50, start99 = _percentiles(self.starts_ms)
        return (
            f"{self.workers:>7} {self.fetch_wait_ms:>9} {self.tasks:>5} {self.events:>6} "
            f"{self.seconds:>7.2f} {self.steps / self.seconds:>8.1f} "
            f"{self.events / self.seconds:>8.1f} {hop50:>8.1f} {hop99:>8.1f} "
            f"{start50:>9.1f} {start99:>9.1f}"
        )


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


HEADER = (
    f"{'workers':>7} {'fetch ms':>9} {'tasks':>5} {'events':>6} {'secs':>7} "
    f"{'steps/s':>8} {'events/s':>8} {'hop p50':>8} {'hop p99':>8} {'start p50':>9} "
    f"{'start p99':>9}"
)


def _assigned(path: Path) -> set[int] | None:
    text = path.read_text() if path.exists() else ""
    found = re.findall(r"worker assigned: .* events=\[([\d,]*)\]", text)
    return {int(p) for p in found[-1].split(",") if p} if found else None


async def _all_events(bootstrap: str, prefix: str) -> list[Event]:
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        seen: set[str] = set()
        out: list[Event] = []
        for entry in await log.read_from(0):
            if isinstance(entry, Recorded) and entry.event.event_id not in seen:
                seen.add(entry.event.event_id)
                out.append(entry.event)
        return out


def run(
    bootstrap: str,
    workers: int,
    fetch_wait_ms: int,
    tasks: int,
    partitions: int,
    consumer: str = "faust",
    exactly_once: bool = False,
) -> Result:
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
                            "-m",
                            "agentledger.cli",
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

            async def submit_all() -> list[str]:
                return list(
                    await asyncio.gather(
                        *(
                            submit_goal(bootstrap, f"bench {i}", workflow=FIXTURE, prefix=prefix)
                            for i in range(tasks)
                        )
                    )
                )

            asyncio.run(submit_all())
            deadline = time.monotonic() + 300
            while True:
                events = asyncio.run(_all_events(bootstrap, prefix))
                done = sum(1 for e in events if e.type == "task_completed")
                if done >= tasks:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {done} of {tasks} tasks finished")
                time.sleep(0.5)
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
    return Result(
        workers=workers,
        fetch_wait_ms=fetch_wait_ms,
        tasks=tasks,
        events=len(events),
        steps=sum(1 for e in events if e.type == "agent_step_started"),
        seconds=(end - start).total_seconds(),
        hops_ms=hops,
        starts_ms=starts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--brokers", help="an existing broker (default: start Apache Kafka here, one KRaft node)"
    )
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="worker counts to try")
    parser.add_argument("--fetch-wait-ms", default="100", help="fetch waits to try")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--consumer", choices=("faust", "aiokafka"), default="faust")
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
        print(
            f"deliveries workflow, zero-latency model, {args.tasks} tasks submitted at once, "
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
                    exactly_once=args.exactly_once,
                )
                print(result.row(), flush=True)
        print(
            "note: each hop is a produce plus a fetch; Apache Kafka answers a waiting fetch as "
            "soon as data arrives (fetch.min.bytes=1), so fetch_max_wait_ms bounds only idle "
            "polls, not hops"
        )


if __name__ == "__main__":
    main()
