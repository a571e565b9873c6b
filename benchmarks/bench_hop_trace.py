"""Where one task's hop goes on a real worker: each event's way, timed step by step.

Runs ``bench_kafka``'s one-task setting (deliveries workflow, zero-latency model, one
worker, ``--tasks`` tasks one at a time) with the worker traced: this script re-runs itself
as the worker process and wraps, without changing them, the points an event passes
(``TaskDriver.emit`` and its sink, the partition writer, aiokafka's connection and the
consumer's ``getmany``, ``GroupWorker``'s hand-off to ``WorkerCore``). Every point writes
``time event-id`` to a trace file; each hop (an event ``e`` caused by ``c``) is then cut
into the steps below, reported as p50 / p90 over all hops:

    c.occ        the reaction made c (its occurred_at)
    c.emit       TaskDriver.emit(c) called
    c.sink       c handed to the worker's sink: the task's lock taken (one append of a
                 task at a time: a parallel branch waits here for its sibling's append)
    c.send       the writer builds c's record batch
    c.wire_out   the produce request is written to the socket (aiokafka's sender task)
    c.fetch_in   a fetch response holding c is read (the broker's share of the hop)
    c.fetched    getmany returned it to the consume loop
    c.on_event / c.dispatched    WorkerCore.on_event: decode, fold, reaction started
    e.occ        the reaction to c made e

    python benchmarks/bench_hop_trace.py                    # starts Apache Kafka itself
    python benchmarks/bench_hop_trace.py --brokers 127.0.0.1:9092 --tasks 6
"""

from __future__ import annotations

import argparse
import bisect
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

EVENT_ID = "x-agentledger-event-id"
STEPS = [
    "c.occ",
    "c.emit",
    "c.sink",
    "c.send",
    "c.wire_out",
    "c.fetch_in",
    "c.fetched",
    "c.on_event",
    "c.dispatched",
    "e.occ",
]


def _traced_worker(trace_path: str, argv: list[str]) -> int:
    """The worker process: install the trace points, then run ``agentledger worker``."""
    import functools

    import aiokafka.conn
    from aiokafka import AIOKafkaConsumer

    from agentledger.cli import main
    from agentledger.streams import driver, kafka_group, kafka_writer

    out = open(trace_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def mark(tag: str, ids: Any) -> None:
        now = f"{time.time():.6f}"
        out.write("".join(f"{now} {tag} {i}\n" for i in ids))

    def ids_of(headers: Any) -> list[str]:
        return [v.decode() for k, v in headers if k == EVENT_ID and v]

    emit = driver.TaskDriver.emit

    async def traced_emit(self: Any, events: list[Any]) -> None:
        mark("emit", [e.event_id for e in events])
        await emit(self, events)

    init = driver.TaskDriver.__init__

    def traced_init(self: Any, runtime: Any, task_id: str, sink: Any, **kw: Any) -> None:
        async def traced_sink(batch: list[Any]) -> None:
            mark("sink", [e.event_id for e in batch])
            await sink(batch)

        init(self, runtime, task_id, traced_sink, **kw)

    enqueue = kafka_writer.PartitionWriter._enqueue

    async def traced_enqueue(self: Any, partition: int, appends: list[Any]) -> Any:
        mark("send", [i for a in appends for r in a.records for i in ids_of(r.headers)])
        return await enqueue(self, partition, appends)

    send = aiokafka.conn.AIOKafkaConnection.send

    def traced_send(self: Any, request: Any, expect_response: bool = True) -> Any:
        if type(request).__name__.startswith("Produce"):
            out.write(f"{time.time():.6f} wire_out -\n")
        return send(self, request, expect_response)

    handle = aiokafka.conn.AIOKafkaConnection._handle_frame

    def traced_handle(self: Any, resp: Any) -> Any:
        if self._requests and type(self._requests[0][1]).__name__.startswith("Fetch"):
            out.write(f"{time.time():.6f} fetch_in -\n")
        return handle(self, resp)

    getmany = AIOKafkaConsumer.getmany

    async def traced_getmany(self: Any, *tps: Any, **kw: Any) -> Any:
        batches = await getmany(self, *tps, **kw)
        mark("fetched", [i for ms in batches.values() for m in ms for i in ids_of(m.headers)])
        return batches

    on_event = kafka_group.GroupWorker._event

    async def traced_event(self: Any, tp: Any, record: Any) -> None:
        ids = ids_of(record.headers)
        mark("on_event", ids)
        await on_event(self, tp, record)
        mark("dispatched", ids)

    driver.TaskDriver.emit = functools.wraps(emit)(traced_emit)  # type: ignore[method-assign]
    driver.TaskDriver.__init__ = traced_init  # type: ignore[method-assign]
    kafka_writer.PartitionWriter._enqueue = traced_enqueue  # type: ignore[method-assign]
    aiokafka.conn.AIOKafkaConnection.send = traced_send
    aiokafka.conn.AIOKafkaConnection._handle_frame = traced_handle
    AIOKafkaConsumer.getmany = traced_getmany
    kafka_group.GroupWorker._event = traced_event  # type: ignore[method-assign]
    return main(argv)


def steps(trace_path: Path, events: list[Any]) -> dict[str, list[float]]:
    """Each hop's steps in ms, keyed ``a->b`` (hops from a goal are left out)."""
    at: dict[str, dict[str, float]] = defaultdict(dict)
    wire_out: list[float] = []
    fetch_in: list[float] = []
    for line in trace_path.read_text().splitlines():
        stamp, tag, ident = line.split()
        t = float(stamp)
        if tag == "wire_out":
            wire_out.append(t)
        elif tag == "fetch_in":
            fetch_in.append(t)
        else:
            at[ident].setdefault(tag, t)
    wire_out.sort()
    fetch_in.sort()

    def first_after(times: list[float], t: float) -> float | None:
        k = bisect.bisect_left(times, t)
        return times[k] if k < len(times) else None

    def last_before(times: list[float], t: float) -> float | None:
        k = bisect.bisect_right(times, t) - 1
        return times[k] if k >= 0 else None

    by_id = {e.event_id: e for e in events}
    out: dict[str, list[float]] = defaultdict(list)
    for e in events:
        c = by_id.get(e.causation_id or "")
        if c is None or c.type == "goal_submitted":
            continue
        ct = at.get(c.event_id, {})
        send, fetched = ct.get("send"), ct.get("fetched")
        if send is None or fetched is None:
            continue
        times = [
            c.occurred_at.timestamp(),
            ct.get("emit"),
            ct.get("sink"),
            send,
            first_after(wire_out, send),
            last_before(fetch_in, fetched),
            fetched,
            ct.get("on_event"),
            ct.get("dispatched"),
            e.occurred_at.timestamp(),
        ]
        known = [t for t in times if t is not None]
        if len(known) < len(times):
            continue
        for n in range(1, len(STEPS)):
            out[f"{STEPS[n - 1]}->{STEPS[n]}"].append((known[n] - known[n - 1]) * 1000)
        out["hop (c.occ->e.occ)"].append((known[-1] - known[0]) * 1000)
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--traced-worker":
        raise SystemExit(_traced_worker(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default=None, help="default: start Apache Kafka here")
    parser.add_argument("--tasks", type=int, default=6, help="run one at a time")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()

    import bench_kafka

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        bootstrap = args.brokers
        if bootstrap is None:
            from tests.support.kafka_broker import running_broker

            bootstrap = stack.enter_context(running_broker()).bootstrap
        trace = Path(tmp) / "trace"
        trace.touch()
        result = bench_kafka.run(
            bootstrap,
            1,
            100,
            args.tasks,
            args.partitions,
            in_flight=1,
            worker=(os.path.abspath(__file__), "--traced-worker", str(trace)),
        )
        hop50, hop99 = bench_kafka._percentiles(result.hops_ms)
        print(
            f"{args.tasks} tasks one at a time, 1 worker: hop p50 {hop50:.2f} ms, "
            f"p99 {hop99:.2f} ms (load average {os.getloadavg()[0]:.1f})"
        )
        for name, values in steps(trace, result.events_seen).items():
            values.sort()
            print(
                f"  {name:28} p50 {statistics.median(values):6.2f} ms   "
                f"p90 {values[int(len(values) * 0.9)]:6.2f} ms   ({len(values)} hops)"
            )


if __name__ == "__main__":
    main()
