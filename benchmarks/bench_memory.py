"""Memory benchmark: projecting memory_written events into the sqlite-vec index, searching
it, and rebuilding it from the log.

    python benchmarks/bench_memory.py                    # 20,000 memories, 256 dimensions
    python benchmarks/bench_memory.py --memories 100000 --dimensions 384

Events are real ``MemoryWritten`` events appended to a real SQLite ledger (one task per 50
memories, 20 namespaces); the embedder is the offline hashing one, so "project" includes
embedding. Every 10th write rewrites an existing key, as agents refreshing a fact do.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from agentledger.memory import HashingEmbedder, MemoryService
from agentledger.schemas.memory import MemoryWritten
from agentledger.streams.sqlite import SqliteEventLog

WORDS = [
    "refund",
    "shipping",
    "warranty",
    "invoice",
    "address",
    "delivery",
    "parcel",
    "kettle",
    "toaster",
    "receipt",
    "return",
    "exchange",
    "damaged",
    "late",
    "express",
    "standard",
    "payment",
    "card",
    "account",
    "password",
    "order",
]


async def main(memories: int, dimensions: int) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        log = SqliteEventLog(Path(tmp) / "ledger.db", synchronous="NORMAL")
        batch = []
        for i in range(memories):
            key = f"fact-{rng.randrange(i + 1) if i % 10 == 9 else i}"
            batch.append(
                MemoryWritten(
                    task_id=f"task-{i // 50}",
                    seq=i % 50 + 1,
                    namespace=f"tenant-{i % 20}",
                    key=key,
                    text=" ".join(rng.choice(WORDS) for _ in range(24)),
                )
            )
            if len(batch) == 50:
                await log.append(batch)
                batch = []
        if batch:
            await log.append(batch)

        embedder = HashingEmbedder(dimensions)
        memory = MemoryService.open(log, Path(tmp) / "memory.db", embedder)
        started = time.perf_counter()
        await memory.projection.catch_up()
        project_s = time.perf_counter() - started

        latencies = []
        for _ in range(200):
            query = " ".join(rng.choice(WORDS) for _ in range(4))
            t = time.perf_counter()
            await memory.search(f"tenant-{rng.randrange(20)}", query, 5)
            latencies.append((time.perf_counter() - t) * 1000)

        started = time.perf_counter()
        await memory.rebuild()
        rebuild_s = time.perf_counter() - started
        stored = sum(memory.store.namespaces().values())
        memory.close()
        await log.close()

    latencies.sort()
    print(f"memories written: {memories:,} ({stored:,} distinct keys), {dimensions} dimensions")
    print(f"project (embed + index): {memories / project_s:,.0f} events/s ({project_s:.2f} s)")
    print(
        f"search top-5 in one namespace: p50 {statistics.median(latencies):.2f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)]:.2f} ms (catch-up check included)"
    )
    print(f"rebuild from the log: {rebuild_s:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", type=int, default=20_000)
    parser.add_argument("--dimensions", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(main(args.memories, args.dimensions))
