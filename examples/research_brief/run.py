"""Run the research-brief workflow through agentledger's public API and print the brief.

    python examples/research_brief/run.py                       # the default goal
    python examples/research_brief/run.py "Write a research brief on ..."
    python examples/research_brief/run.py --home /tmp/ledger --quiet

The ledger (SQLite) and the sandbox the brief is saved in live under ``--home``
(default: ``.agentledger`` in the current directory, like the rest of agentledger).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, cast

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.schemas import Event
from agentledger.settings import Settings
from agentledger.streams import SqliteEventLog
from agentledger.streams.embedded import EmbeddedRunner

WORKFLOW = Path(__file__).resolve().parent / "workflow.yaml"
DEFAULT_GOAL = (
    "Write a research brief on running LLM agents reliably in production: "
    "idempotency, retries, cost control and auditability."
)


def _print_event(event: Event, fresh: bool) -> None:
    if not fresh:
        return
    where = getattr(event, "subtask_id", "") or ""
    tool = getattr(event, "tool", "") or ""
    print(
        f"{event.seq:>3}  {event.type:<22} {event.agent or '':<10} {where:<10} {tool}",
        file=sys.stderr,
    )


async def run(goal: str, settings: Settings, *, quiet: bool) -> int:
    workflow = load_workflow(WORKFLOW, settings=settings)
    runtime = build_runtime(workflow, settings)
    settings.ledger_path.parent.mkdir(parents=True, exist_ok=True)
    log = SqliteEventLog(settings.ledger_path, synchronous=settings.sqlite_synchronous)
    try:
        runner = EmbeddedRunner(log, runtime, on_event=None if quiet else _print_event)
        task_id = await runner.submit(goal)
        state = await runner.run(task_id)
    finally:
        await runtime.aclose()
        await log.close()
    print(f"\ntask {task_id}: {state.status}", file=sys.stderr)
    if state.status != "completed" or not isinstance(state.result, dict):
        print(f"failed: {state.failure}", file=sys.stderr)
        return 1
    result = cast(dict[str, Any], state.result)
    print(
        f"approved={result['approved']} score={result['score']}/10 "
        f"saved_to={result['saved_to']} tokens={state.tokens_in + state.tokens_out} "
        f"llm_calls={state.llm_calls} tool_calls={state.tool_calls}\n",
        file=sys.stderr,
    )
    for issue in result["issues"]:
        print(f"review issue: {issue}", file=sys.stderr)
    print(result["brief_markdown"], end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("goal", nargs="?", default=DEFAULT_GOAL, help="what the brief is about")
    parser.add_argument("--home", type=Path, help="where the ledger and sandbox live")
    parser.add_argument("--quiet", action="store_true", help="do not list events as they happen")
    args = parser.parse_args(argv)
    settings = Settings(home=args.home) if args.home else Settings()
    return asyncio.run(run(args.goal, settings, quiet=args.quiet))


if __name__ == "__main__":
    raise SystemExit(main())
