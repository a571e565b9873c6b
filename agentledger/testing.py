"""Test helpers shipped with the package: run a goal in memory and look at what happened.

from agentledger.testing import run_goal
from agentledger.llm import ScriptedModel, reply_json

result = await run_goal(workflow, ScriptedModel({...}), "Summarise X")
assert result.state.status == "completed"
assert result.types()[:3] == ["goal_submitted", "subtask_assigned", "agent_step_started"]
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.llm.base import ChatModel
from agentledger.llm.pricing import PriceTable
from agentledger.projections.task_state import TaskState
from agentledger.schemas import Event
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.log import EventLog
from agentledger.streams.log import task_events as task_events  # part of the test kit
from agentledger.streams.memory import MemoryEventLog


@dataclass
class RunResult:
    task_id: str
    state: TaskState
    events: list[Event]
    log: EventLog

    def types(self, subtask_id: str | None = None) -> list[str]:
        """Event types in order, optionally only those of one subtask."""
        return [
            e.type
            for e in self.events
            if subtask_id is None or getattr(e, "subtask_id", None) == subtask_id
        ]

    def of_type(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]


def make_runtime(
    workflow: Workflow,
    model: ChatModel | Mapping[str, ChatModel],
    *,
    sandbox: Path | None = None,
    prices: PriceTable | None = None,
) -> Runtime:
    models = {a: (model[a] if isinstance(model, Mapping) else model) for a in workflow.agents}
    sandbox = sandbox or Path(tempfile.mkdtemp(prefix="agentledger-sandbox-"))
    return Runtime(
        workflow=workflow,
        models=models,
        prices=(prices or PriceTable()).with_overrides(workflow.prices),
        sandbox=sandbox,
    )


async def run_goal(
    workflow: Workflow,
    model: ChatModel | Mapping[str, ChatModel],
    goal: str,
    *,
    inputs: dict[str, JsonValue] | None = None,
    log: EventLog | None = None,
    runtime: Runtime | None = None,
) -> RunResult:
    """Submit ``goal`` and drive it to the end on an in-memory log (or the one given)."""
    log = log or MemoryEventLog()
    runner = EmbeddedRunner(log, runtime or make_runtime(workflow, model))
    task_id = await runner.submit(goal, inputs=inputs)
    state = await runner.run(task_id)
    return RunResult(task_id, state, await task_events(log, task_id), log)
