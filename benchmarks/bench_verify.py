"""Cost of `verify`: re-running a recorded task's reactions against today's processors.

Records ``--tasks`` runs of the research-brief example (offline scripted model, real tools)
on an in-memory log, then verifies each with model and tool calls answered from the
recording. The figure is the verifier's own work per reaction: folding the history,
running the processor, masking its output and comparing it with the recorded events.

    python benchmarks/bench_verify.py              # 20 tasks
    python benchmarks/bench_verify.py --tasks 100
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from pathlib import Path

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.evaluation.verify import verify_events
from agentledger.settings import Settings
from agentledger.testing import run_goal

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "research_brief" / "workflow.yaml"
GOAL = "Write a research brief on running LLM agents reliably in production."


async def main(tasks: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        wf = load_workflow(EXAMPLE, settings=settings)
        runtime = build_runtime(wf, settings)
        runs = [await run_goal(wf, {}, GOAL, runtime=runtime) for _ in range(tasks)]
        events = sum(len(r.events) for r in runs)
        tracemalloc.start()
        started = time.perf_counter()
        reactions = 0
        for run in runs:
            result = await verify_events(run.events, runtime)
            assert result.ok, result.describe()
            reactions += result.reactions
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"verified {tasks} tasks, {events} events, {reactions} reactions in {elapsed:.2f} s")
    print(
        f"  {elapsed / reactions * 1e6:,.0f} µs per reaction, {reactions / elapsed:,.0f} reactions/s"
    )
    print(f"  {elapsed / tasks * 1e3:,.1f} ms per task; peak traced memory {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    asyncio.run(main(parser.parse_args().tasks))
