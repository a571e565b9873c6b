"""Where a worker hop's time goes: the parts of one hop measured apart.

A hop on the Kafka worker is: the reaction's append (an idempotent produce, acks=all), the
record's trip back to the owning worker (fetch), the consumer framework's hand-off, and the
worker's own work (decode, fold, dispatch, the reaction). This script measures:

- ``core``: the worker's own work per event, ``WorkerCore`` over in-memory topics
  (``kafka_memory``), deliveries workflow at zero model latency: no broker at all;
- ``produce``: one ``send_and_wait`` of an event-sized record with agentledger's producer
  settings (``kafka_clients.event_producer``);
- ``round trip``: produce, then receive it with a bare aiokafka consumer (assigned, no
  group) polling with ``--fetch-wait-ms``: the broker's share of a hop;
- ``read_task``: one task's history read by ``KafkaEventLog.read_task`` (a lookup by the
  task's start time and a fetch, on a consumer lent by the log's pool): what a goal's
  duplicate check and a rebuild on first sight cost, in wall and CPU time.

Compare with ``bench_kafka.py``'s hop p50 (faust's worker): what is left over is the
consumer framework's hand-off.

    python benchmarks/bench_worker_hop.py --brokers 127.0.0.1:9092
    python benchmarks/bench_worker_hop.py            # starts Apache Kafka itself
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DELIVERIES_MODEL_DELAY"] = "0"

from aiokafka import TopicPartition  # noqa: E402

from agentledger import heap  # noqa: E402
from agentledger.agents.runtime import build_runtime  # noqa: E402
from agentledger.agents.workflow import load_workflow  # noqa: E402
from agentledger.schemas import GoalSubmitted, WorkflowRef, new_event_id  # noqa: E402
from agentledger.settings import Settings  # noqa: E402
from agentledger.streams.kafka import KafkaEventLog  # noqa: E402
from agentledger.streams.kafka_clients import event_producer, record_consumer  # noqa: E402
from agentledger.streams.kafka_memory import MemoryGroup, MemoryTopics  # noqa: E402
from agentledger.streams.kafka_topics import init_topics  # noqa: E402
from agentledger.streams.kafka_worker import WorkerConfig, WorkerCore  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "deliveries" / "workflow.yaml"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def core_cost(tasks: int) -> str:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        workflow = load_workflow(FIXTURE, settings=settings)
        topics = MemoryTopics("bench", partitions=4)
        group = MemoryGroup(topics)
        core = WorkerCore(
            build_runtime(workflow, settings),
            WorkerConfig("memory", prefix="bench"),
            topics.clients(),
            out=io.StringIO(),
        )
        await group.join(core)
        heap.settle()  # as `agentledger worker` does before it runs
        ref = WorkflowRef(name=workflow.name, digest=workflow.digest or None)
        for n in range(tasks):
            goal = GoalSubmitted(task_id=f"t{n}", seq=1, goal="go", workflow=ref)
            topics.produce_event(topics.layout.goals, goal)
        started = time.perf_counter()
        await group.run_until_idle(timeout_s=600)
        seconds = time.perf_counter() - started
        events = len(topics.all(topics.layout.events))
        await core.shutdown()
    return (
        f"core (in memory): {tasks} tasks, {events} events in {seconds:.2f} s: "
        f"{events / seconds:.0f} events/s, {seconds / events * 1e6:.0f} us per event"
    )


async def broker_share(bootstrap: str, count: int, fetch_wait_ms: int) -> list[str]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    await init_topics(bootstrap, prefix, partitions=1)
    topic = f"{prefix}.events"
    value = b"x" * 600  # about one event
    producer = event_producer(bootstrap)
    consumer = record_consumer(bootstrap, fetch_max_wait_ms=fetch_wait_ms, group_id=None)
    await producer.start()
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    produce: list[float] = []
    trip: list[float] = []
    try:
        for _ in range(20):  # warm up connections and metadata
            await producer.send_and_wait(topic, value, key=b"k")
        await consumer.seek_to_end(tp)
        for _ in range(count):
            t0 = time.perf_counter()
            await producer.send_and_wait(topic, value, key=b"k")
            t1 = time.perf_counter()
            while not (await consumer.getmany(tp, timeout_ms=1000)).get(tp):
                pass
            t2 = time.perf_counter()
            produce.append((t1 - t0) * 1000)
            trip.append((t2 - t0) * 1000)
    finally:
        await consumer.stop()
        await producer.stop()
    return [
        f"produce (idempotent, acks=all): p50 {statistics.median(produce):.2f} ms, "
        f"p99 {_p(produce, 0.99):.2f} ms ({count} records)",
        f"round trip (produce + bare consumer, fetch wait {fetch_wait_ms} ms): "
        f"p50 {statistics.median(trip):.2f} ms, p99 {_p(trip, 0.99):.2f} ms",
    ]


async def read_cost(bootstrap: str, count: int, fetch_wait_ms: int) -> str:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    await init_topics(bootstrap, prefix, partitions=4)
    ref = WorkflowRef(name="bench")
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=fetch_wait_ms) as log:
        tasks = [new_event_id() for _ in range(20)]
        await log.append([GoalSubmitted(task_id=t, seq=1, goal="go", workflow=ref) for t in tasks])
        for task in tasks[:3]:  # warm up: connections, metadata
            await log.read_task(task)
        wall: list[float] = []
        cpu = time.process_time()
        for n in range(count):
            t0 = time.perf_counter()
            await log.read_task(tasks[n % len(tasks)])
            wall.append((time.perf_counter() - t0) * 1000)
        cpu_ms = (time.process_time() - cpu) * 1000 / count
    return (
        f"read_task (one task's history): p50 {statistics.median(wall):.2f} ms, "
        f"p99 {_p(wall, 0.99):.2f} ms, CPU {cpu_ms:.2f} ms a read ({count} reads)"
    )


async def main_async(args: argparse.Namespace, bootstrap: str) -> None:
    print(await core_cost(args.tasks), flush=True)
    for line in await broker_share(bootstrap, args.records, args.fetch_wait_ms):
        print(line, flush=True)
    print(await read_cost(bootstrap, args.records, args.fetch_wait_ms), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default=None, help="default: start Apache Kafka here")
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--fetch-wait-ms", type=int, default=100)
    args = parser.parse_args()
    with ExitStack() as stack:
        bootstrap = args.brokers
        if bootstrap is None:
            from tests.support.kafka_broker import running_broker

            bootstrap = stack.enter_context(running_broker()).bootstrap
        asyncio.run(main_async(args, bootstrap))


if __name__ == "__main__":
    main()
