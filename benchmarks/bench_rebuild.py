"""Rebalance recovery on Apache Kafka: how long a task's new owner takes to rebuild it, on a
topic holding many other tasks' events vs a nearly empty one.

A new owner (a fresh ``KafkaEventLog``, as after a rebalance or restart) reads the task's
history with ``read_task`` and folds it into the task's state: the work a worker does on
first sight of a task before it can go on. Measured two ways on the same topic:

- by start time: a UUIDv7 task id, found with ListOffsets by timestamp (``task_start``);
- from offset 0: the same history under a chosen (non-UUIDv7) task id, which reads the
  partition from the beginning, as every rebuild did before.

The topic has one partition by default (the worst case for a scan: every event is in the
task's partition). Each task's history is 43 events (as a deliveries task), appended after
the filler, followed by 1,000 more events of other tasks.

    python benchmarks/bench_rebuild.py                        # starts Apache Kafka itself
    python benchmarks/bench_rebuild.py --brokers 127.0.0.1:9092 --sizes 100,100000,300000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support (the broker helper) lives in the repo

from agentledger.projections.task_state import fold  # noqa: E402
from agentledger.schemas import (  # noqa: E402
    EventBase,
    GoalSubmitted,
    TaskCompleted,
    ToolCallRequested,
    WorkflowRef,
    new_event_id,
)
from agentledger.streams import Recorded  # noqa: E402
from agentledger.streams.kafka import KafkaEventLog  # noqa: E402
from agentledger.streams.kafka_topics import init_topics  # noqa: E402

HISTORY = 43
AFTER = 1_000
BATCH = 1_000


def history(task_id: str) -> list[EventBase]:
    goal = GoalSubmitted(task_id=task_id, seq=1, goal="deliver", workflow=WorkflowRef(name="w"))
    steps: list[EventBase] = [
        ToolCallRequested(
            task_id=task_id,
            seq=seq,
            subtask_id="s1",
            iteration=seq,
            call_id=f"c{seq}",
            tool="courier",
            arguments={"n": seq},
            idempotency_key=f"k{seq}",
        )
        for seq in range(2, HISTORY)
    ]
    return [goal, *steps, TaskCompleted(task_id=task_id, seq=HISTORY, result="done")]


async def fill(log: KafkaEventLog, count: int, tag: str) -> None:
    for first in range(0, count, BATCH):
        last = min(first + BATCH, count)
        await log.append(
            [TaskCompleted(task_id=f"{tag}-{n}", seq=1, result=None) for n in range(first, last)]
        )


async def rebuild_ms(bootstrap: str, prefix: str, task_id: str) -> tuple[float, int, int]:
    """A new owner's rebuild of ``task_id``: ms, events found, records fetched."""
    async with KafkaEventLog(bootstrap, prefix=prefix) as owner:
        began = time.perf_counter()
        entries = await owner.read_task(task_id)
        events = [e.event for e in entries if isinstance(e, Recorded)]
        state = fold(task_id, events)
        elapsed = (time.perf_counter() - began) * 1000
        if state.last_seq != HISTORY or len(events) != HISTORY:
            raise SystemExit(f"rebuild of {task_id} found {len(events)} of {HISTORY} events")
        read = owner.last_task_read
        return elapsed, len(events), 0 if read is None else read.records


async def measure(bootstrap: str, size: int, partitions: int, repeat: int) -> str:
    prefix = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
    await init_topics(bootstrap, prefix, partitions=partitions)
    async with KafkaEventLog(bootstrap, prefix=prefix) as log:
        began = time.perf_counter()
        await fill(log, size, "before")
        fill_s = time.perf_counter() - began
        await asyncio.sleep(0.01)
        fast, legacy = new_event_id(), f"chosen-{uuid.uuid4().hex[:8]}"
        await log.append(history(fast))
        await log.append(history(legacy))
        await fill(log, AFTER, "after")
    rows = []
    for task_id in (fast, legacy):
        runs = [await rebuild_ms(bootstrap, prefix, task_id) for _ in range(repeat)]
        ms = [r[0] for r in runs]
        rows.append((statistics.median(ms), max(ms), runs[0][2]))
    total = size + 2 * HISTORY + AFTER
    (f_med, f_max, f_rec), (l_med, l_max, l_rec) = rows
    return (
        f"{total:>9,} {fill_s:>7.1f} | {f_med:>8.1f} {f_max:>8.1f} {f_rec:>8,} | "
        f"{l_med:>8.1f} {l_max:>8.1f} {l_rec:>8,}"
    )


async def amain(bootstrap: str, sizes: list[int], partitions: int, repeat: int) -> None:
    print(
        f"rebuild of a {HISTORY}-event task by a new owner (read_task + fold), "
        f"{partitions} partition(s), median and max of {repeat} runs, broker {bootstrap}"
    )
    print(
        f"{'events':>9} {'fill s':>7} | {'start ms':>8} {'max':>8} {'fetched':>8} | "
        f"{'from0 ms':>8} {'max':>8} {'fetched':>8}"
    )
    for size in sizes:
        print(await measure(bootstrap, size, partitions, repeat), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--brokers", help="an existing broker (default: start Apache Kafka here, one KRaft node)"
    )
    parser.add_argument("--sizes", default="100,100000", help="events of other tasks before")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    with ExitStack() as stack:
        bootstrap = args.brokers
        if bootstrap is None:
            from tests.support.kafka_broker import running_broker

            bootstrap = stack.enter_context(running_broker()).bootstrap
        asyncio.run(amain(bootstrap, sizes, args.partitions, args.repeat))


if __name__ == "__main__":
    main()
