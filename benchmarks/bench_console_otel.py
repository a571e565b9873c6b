"""Console and OTel benchmark: the per-event cost of what the console and exporter add.

    python benchmarks/bench_console_otel.py            # 200 runs of the console fixture workflow
    python benchmarks/bench_console_otel.py --runs 1000

Runs the console fixture workflow (planner, a tool-calling gatherer, a writer) with the
scripted model on an in-memory log, then measures on those real events:

* span projection (``SpanProjector.take``), without and with ``--content`` masking;
* the runs index fold the console keeps (``TaskState`` ``evolve`` per event);
* one run page (``views.run_view``) and a replay at the middle seq.

Export over the network is left out: it is the SDK's exporter and the receiver's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from pathlib import Path

from agentledger.agents.workflow import load_workflow
from agentledger.console import views
from agentledger.llm import ScriptedModel
from agentledger.otel.spans import SpanProjector
from agentledger.projections.task_state import TaskState, evolve
from agentledger.schemas import Event
from agentledger.testing import run_goal

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "console"
sys.path.insert(0, str(FIXTURES))
from console_model import respond  # noqa: E402


async def make_runs(n: int) -> list[list[Event]]:
    workflow = load_workflow(FIXTURES / "workflow.yaml")
    return [
        (await run_goal(workflow, ScriptedModel(respond), f"count orders {i}")).events
        for i in range(n)
    ]


def timed(label: str, events: int, fn: object) -> None:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    tracemalloc.start()  # a second pass for memory: tracing slows the timed one down
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label:<38} {events / took:>10,.0f} events/s  {took * 1e6 / events:>6.1f} µs/event"
        f"  peak {peak / 2**20:.1f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    runs = asyncio.run(make_runs(args.runs))
    flat = [e for run in runs for e in run]
    print(f"{args.runs} runs, {len(flat)} events")

    def project(content: bool) -> None:
        projector = SpanProjector(content=content)
        spans = sum(len(projector.take(e)) for e in flat)
        assert spans == 9 * args.runs

    def index() -> None:
        states: dict[str, TaskState] = {}
        for e in flat:
            states[e.task_id] = evolve(states.get(e.task_id) or TaskState(task_id=e.task_id), e)

    def pages() -> None:
        for run in runs:
            views.run_view(run[0].task_id, run)
            views.run_view(run[0].task_id, run, len(run) // 2)

    timed("spans (content off)", len(flat), lambda: project(False))
    timed("spans (content on, masked)", len(flat), lambda: project(True))
    timed("console runs index (evolve)", len(flat), index)
    timed("run page + replay at mid seq", 2 * len(flat), pages)


if __name__ == "__main__":
    main()
