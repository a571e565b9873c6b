"""Cost of one durable agent step in the embedded runtime.

A step is one iteration of an agent's loop: the step-started event, the model call (a
zero-latency scripted model), the tool request and the tool result, each appended to
the SQLite log and folded into the task state. The figure is the runtime's own overhead:
encoding, durable appends, projection, dispatch.

    python benchmarks/bench_embedded.py                 # 20 subtasks x 25 steps, FULL and NORMAL
    python benchmarks/bench_embedded.py --subtasks 50 --steps 40 --synchronous NORMAL
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

from agentledger.agents.workflow import AgentSpec, Limits, Workflow
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, reply, reply_json
from agentledger.schemas import RecordedToolCall
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, task_events
from agentledger.tools import tool


@tool()
def lookup(key: str) -> dict[str, str]:
    """Look a key up."""
    return {"key": key, "value": key.upper()}


def build(subtasks: int, steps: int) -> tuple[Workflow, ScriptedModel]:
    wf = Workflow.build(
        name="bench",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("worker",)),
            AgentSpec(
                "worker", tools=("lookup",), max_iterations=steps + 1, warn_iterations=steps + 1
            ),
        ],
        tools=[lookup],
        # The workload is bigger than the default task ceilings: it declares its size.
        limits=Limits(
            max_llm_calls=subtasks * (steps + 1) + 1, max_events=subtasks * (steps + 1) * 6 + 20
        ),
    )
    plan = reply_json({"subtasks": [{"id": f"s{i}", "agent": "worker"} for i in range(subtasks)]})

    def respond(r: ModelRequest) -> ModelResponse:
        if r.agent == "planner":
            return plan
        if r.iteration <= steps:
            call = RecordedToolCall(
                call_id=f"{r.subtask_id}-{r.iteration}",
                tool="lookup",
                arguments={"key": f"k{r.iteration}"},
            )
            return ModelResponse(model="scripted", tool_calls=[call], finish_reason="tool_calls")
        return reply("done")

    return wf, ScriptedModel(respond)


async def one_run(
    subtasks: int, steps: int, synchronous: str, *, trace: bool
) -> tuple[float, float, int, int]:
    wf, model = build(subtasks, steps)
    with tempfile.TemporaryDirectory() as tmp:
        log = SqliteEventLog(Path(tmp) / "ledger.db", synchronous=synchronous)  # type: ignore[arg-type]
        runner = EmbeddedRunner(log, make_runtime(wf, model, sandbox=Path(tmp)))
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        task_id = await runner.submit("benchmark")
        state = await runner.run(task_id)
        elapsed = time.perf_counter() - started
        peak = 0
        if trace:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert state.status == "completed", state.failure
        events = len(await task_events(log, task_id))
        await log.close()
    return elapsed, peak, state.llm_calls, events


async def measure(subtasks: int, steps: int, synchronous: str) -> dict[str, float]:
    # Timed without tracemalloc (it slows allocation-heavy code several-fold); the
    # memory peak comes from a second, traced run of the same workload.
    elapsed, _, agent_steps, events = await one_run(subtasks, steps, synchronous, trace=False)
    _, peak, _, _ = await one_run(subtasks, steps, synchronous, trace=True)
    return {
        "agent_steps": agent_steps,
        "events": events,
        "seconds": elapsed,
        "us_per_step": elapsed / agent_steps * 1e6,
        "steps_per_s": agent_steps / elapsed,
        "us_per_event": elapsed / events * 1e6,
        "peak_traced_mib": peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subtasks", type=int, default=20)
    parser.add_argument("--steps", type=int, default=25, help="tool-calling steps per subtask")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL", "both"], default="both")
    args = parser.parse_args()
    modes = ["FULL", "NORMAL"] if args.synchronous == "both" else [args.synchronous]
    print(
        f"embedded runtime, SQLite log, zero-latency scripted model: {args.subtasks} subtasks x {args.steps} steps"
    )
    print(
        f"{'synchronous':<12}{'steps':>7}{'events':>8}{'µs/step':>10}{'steps/s':>10}{'µs/event':>10}{'peak MiB':>10}"
    )
    for mode in modes:
        r = asyncio.run(measure(args.subtasks, args.steps, mode))
        print(
            f"{mode:<12}{r['agent_steps']:>7.0f}{r['events']:>8.0f}{r['us_per_step']:>10.0f}"
            f"{r['steps_per_s']:>10.0f}{r['us_per_event']:>10.0f}{r['peak_traced_mib']:>10.1f}"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
