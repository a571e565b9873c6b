"""Tools during an eval: answered from a baseline's recording, side effects refused.

``EvalTools(recording, allow_side_effects)`` wraps a workflow's tools for one run:

* replay mode (``recording`` given): a call the baseline task made — the same tool with the
  same validated arguments — gets the baseline's result (or its failure) without running;
* a side-effecting tool the recording cannot answer is refused (``side_effect_blocked``)
  unless the suite sets ``allow_side_effects``: nothing changes the world during an eval;
* a read-only tool the recording cannot answer runs.

The counters say what happened (``replayed``, ``blocked``, ``ran``), for the run's events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from agentledger.agents.workflow import Workflow
from agentledger.errors import ToolError
from agentledger.evaluation.recording import answering_tool, replace_tools
from agentledger.llm.base import canonical_json
from agentledger.schemas import Event, ToolCallCompleted, ToolCallFailed, ToolCallRequested
from agentledger.tools.registry import Tool, ToolContext

_Outcome = tuple[bool, JsonValue, str]  # ok, result, failure kind ("" when ok)


def tool_key(tool: Tool, arguments: Mapping[str, Any]) -> tuple[str, str] | None:
    """What makes two calls the same call: the tool and its validated arguments."""
    try:
        return tool.name, canonical_json(tool.validate(arguments))
    except ValueError:  # the recorded arguments no longer fit the tool: nothing to match
        return None


class EvalTools:
    def __init__(
        self,
        workflow: Workflow,
        *,
        recording: Sequence[Event] | None = None,
        allow_side_effects: bool = False,
    ) -> None:
        self.allow_side_effects = allow_side_effects
        self.replayed = self.blocked = self.ran = 0
        self._outcomes: dict[tuple[str, str], _Outcome] = {}
        if recording is not None:
            self._learn(workflow, recording)
        self.workflow = replace_tools(workflow, lambda t: answering_tool(t, self._answer))

    def _learn(self, workflow: Workflow, events: Sequence[Event]) -> None:
        keys: dict[str, tuple[str, str]] = {}
        for e in events:
            if isinstance(e, ToolCallRequested):
                tool = workflow.tools.get(e.tool)
                key = tool_key(tool, e.arguments) if tool is not None else None
                if key is not None:
                    keys[e.idempotency_key] = key
            elif isinstance(e, ToolCallCompleted) and e.idempotency_key in keys:
                self._outcomes[keys[e.idempotency_key]] = (True, e.result, "")
            elif isinstance(e, ToolCallFailed) and e.idempotency_key in keys:
                self._outcomes[keys[e.idempotency_key]] = (False, e.message, e.error_kind)

    async def _answer(self, tool: Tool, ctx: ToolContext, arguments: dict[str, Any]) -> JsonValue:
        key = tool_key(tool, arguments)
        if key is not None and key in self._outcomes:
            self.replayed += 1
            ok, result, kind = self._outcomes[key]
            if not ok:
                raise ToolError(str(result), kind=kind)
            return result
        if tool.side_effect and not self.allow_side_effects:
            self.blocked += 1
            raise ToolError(
                f"tool {tool.name!r} has side effects, which are off during an eval "
                "(set allow_side_effects: true in the suite to allow them)",
                kind="side_effect_blocked",
            )
        self.ran += 1
        return await tool.run(arguments, ctx)
