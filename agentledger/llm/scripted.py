"""A deterministic, offline model: the stand-in for an LLM in examples and tests.

Two ways to script it:

* turns per agent (or per ``agent/subtask``), consumed in order::

      model = ScriptedModel({
          "planner": [reply_json({"subtasks": [...]})],
          "researcher": [call_tool("search_notes", query="kafka"), reply("found it")],
      })

* a function that answers each request (like a tiny model of your own)::

      model = ScriptedModel(lambda request: reply("ok"))

A call nobody scripted raises at once (it never guesses), and ``assert_complete()`` fails
when scripted turns were left unused.

Requests to compact an agent's context (``request.purpose == "summary"``) take turns from
``agent/subtask:summary`` or ``agent:summary`` only, never from the agent's own turns; when
none is scripted the call fails and the runtime falls back to an extractive summary.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from agentledger.errors import ModelError
from agentledger.llm.base import ModelRequest, ModelResponse, canonical_json
from agentledger.llm.tokens import estimate_tokens
from agentledger.schemas.llm import RecordedToolCall, TokenUsage

ScriptFunction = Callable[[ModelRequest], "ModelResponse | Awaitable[ModelResponse]"]
Turn = ModelResponse | Callable[[ModelRequest], ModelResponse] | Exception

_call_ids = itertools.count(1)


def _usage(
    request: ModelRequest, content: str | None, calls: Sequence[RecordedToolCall]
) -> TokenUsage:
    prompt = sum(estimate_tokens(m.content) for m in request.messages)
    out = estimate_tokens(content) + sum(
        estimate_tokens(canonical_json(c.arguments)) for c in calls
    )
    return TokenUsage(input_tokens=prompt, output_tokens=out)


def reply(content: str, *, model: str = "scripted") -> ModelResponse:
    """A final text answer."""
    return ModelResponse(content=content, finish_reason="stop", model=model)


def reply_json(value: JsonValue, *, model: str = "scripted") -> ModelResponse:
    """A final answer holding JSON (for agents with an output model)."""
    return reply(canonical_json(value), model=model)


def call_tool(tool: str, /, **arguments: Any) -> ModelResponse:
    """An answer that asks for one tool call."""
    return call_tools((tool, arguments))


def call_tools(*calls: tuple[str, dict[str, Any]]) -> ModelResponse:
    """An answer that asks for several tool calls at once (they run concurrently)."""
    return ModelResponse(
        tool_calls=[
            RecordedToolCall(call_id=f"call_{next(_call_ids)}", tool=name, arguments=args)
            for name, args in calls
        ],
        finish_reason="tool_calls",
        model="scripted",
    )


class ScriptExhaustedError(ModelError):
    def __init__(self, request: ModelRequest) -> None:
        super().__init__(
            f"scripted model has no turn left for agent {request.agent!r} "
            f"(subtask {request.subtask_id!r}, iteration {request.iteration})",
            kind="script_exhausted",
            retryable=False,
        )


class ScriptedModel:
    """Deterministic model for offline runs and tests. See the module docstring."""

    provider = "scripted"

    def __init__(
        self,
        script: Mapping[str, Sequence[Turn]] | ScriptFunction,
        *,
        latency_s: float = 0.0,
        name: str = "scripted",
    ) -> None:
        self.name = name
        self.latency_s = latency_s
        self.calls: list[ModelRequest] = []
        self._function: ScriptFunction | None = None
        self._turns: dict[str, deque[Turn]] = defaultdict(deque)
        if callable(script):
            self._function = script
        else:
            for key, turns in script.items():
                self._turns[key].extend(turns)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        response = await self._answer(request)
        usage = response.usage
        if usage == TokenUsage():
            usage = _usage(request, response.content, response.tool_calls)
        return response.model_copy(update={"usage": usage, "model": request.model or self.name})

    async def _answer(self, request: ModelRequest) -> ModelResponse:
        if self._function is not None:
            result = self._function(request)
            if inspect.isawaitable(result):
                result = await result
            return result
        keys = [f"{request.agent}/{request.subtask_id}", request.agent]
        if request.purpose == "summary":
            keys = [f"{k}:summary" for k in keys]
        for key in keys:
            queue = self._turns.get(key)
            if queue:
                turn = queue.popleft()
                if isinstance(turn, Exception):
                    raise turn
                if callable(turn):
                    return turn(request)
                return turn
        raise ScriptExhaustedError(request)

    def remaining(self) -> dict[str, int]:
        return {key: len(q) for key, q in self._turns.items() if q}

    def assert_complete(self) -> None:
        """Fail if scripted turns were never asked for."""
        left = self.remaining()
        if left:
            raise AssertionError(f"scripted turns never used: {left}")
