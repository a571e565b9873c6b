"""A recorded task as the answerer of model and tool calls, for verify, forks and evals.

The log holds every model response and tool outcome, each caused by the event whose
reaction asked for it. ``Recording`` indexes a task's events by cause; ``RecordedModel``
and ``recorded_tools`` answer a reaction's calls with what the recording says that same
reaction got, so nothing outside the process is asked again:

* a model call made in reaction to event E gets the ``llm_call_completed`` (or the
  ``context_summarized`` summary) that E caused, for the same subtask and iteration;
* a tool call made in reaction to E gets the outcome E caused for the same idempotency key
  (a result, or the recorded failure raised again as a ``ToolError``).

Set ``recording.cause`` to the event being handled before its reaction runs. A call the
recording cannot answer raises (``not_recorded``): the reaction then differs from the
recorded one, which is what a verifier reports.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from agentledger.agents.workflow import Workflow
from agentledger.errors import ModelError, ToolError
from agentledger.llm.base import ModelRequest, ModelResponse
from agentledger.schemas import (
    ContextSummarized,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRetryScheduled,
)
from agentledger.tools.registry import Tool, ToolContext, ToolRegistry

NOT_RECORDED = "not_recorded"


class Recording:
    """A task's events indexed by the event that caused them."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = list(events)
        self.caused: dict[str, list[Event]] = defaultdict(list)
        for e in sorted(self.events, key=lambda e: e.seq):
            if e.causation_id:
                self.caused[e.causation_id].append(e)
        self.cause: Event | None = None

    def children(self, event_id: str) -> list[Event]:
        return self.caused.get(event_id, [])

    def _current(self) -> list[Event]:
        return self.children(self.cause.event_id) if self.cause is not None else []

    def model_answer(self, request: ModelRequest) -> ModelResponse:
        for e in self._current():
            if request.purpose == "summary" and isinstance(e, ContextSummarized):
                if e.method == "extractive":  # the summary call failed: fail it again
                    kind, _, message = (e.fallback_reason or "").partition(": ")
                    raise ModelError(message, kind=kind or "model_error")
                return ModelResponse(
                    content=e.summary, model=e.model or request.model, usage=e.usage
                )
            if request.purpose != "step" or getattr(e, "subtask_id", None) != request.subtask_id:
                continue
            if isinstance(e, LlmCallCompleted) and e.iteration == request.iteration:
                return ModelResponse(
                    content=e.content,
                    tool_calls=e.tool_calls,
                    finish_reason=e.finish_reason,
                    model=e.model,
                    usage=e.usage,
                    attempts=e.attempts,
                    used_fallback=e.fallback_from is not None,
                    raw=e.raw_response,
                )
            if isinstance(e, LlmCallFailed) and e.iteration == request.iteration:
                raise ModelError(
                    e.message, kind=e.error_kind, retryable=e.retryable, attempts=e.attempts
                )
        raise ModelError(
            f"the recording has no model answer for agent {request.agent!r}, subtask "
            f"{request.subtask_id!r}, iteration {request.iteration} ({request.purpose}) "
            f"in reaction to {self._describe_cause()}",
            kind=NOT_RECORDED,
        )

    def tool_answer(self, tool: str, ctx: ToolContext) -> JsonValue:
        for e in self._current():
            if getattr(e, "idempotency_key", None) != ctx.idempotency_key:
                continue
            if isinstance(e, ToolCallCompleted):
                return e.result
            if isinstance(e, ToolCallFailed):
                raise ToolError(e.message, kind=e.error_kind)
            if isinstance(e, ToolCallRetryScheduled):
                raise ToolError(e.error, kind=e.error_kind, retryable=True)
        raise ToolError(
            f"the recording has no outcome for tool {tool!r} (idempotency key "
            f"{ctx.idempotency_key}) in reaction to {self._describe_cause()}",
            kind=NOT_RECORDED,
        )

    def _describe_cause(self) -> str:
        c = self.cause
        return f"{c.type} (seq {c.seq})" if c is not None else "no event"


class RecordedModel:
    """A model that answers from a ``Recording`` (see the module docstring)."""

    provider = "recorded"

    def __init__(self, recording: Recording, provider: str = "recorded") -> None:
        self.recording = recording
        self.provider = provider
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return self.recording.model_answer(request)


def replace_tools(workflow: Workflow, make: Any) -> Workflow:
    """``workflow`` with each tool replaced by ``make(tool)`` (a ``Tool``)."""
    return dataclasses.replace(workflow, tools=ToolRegistry([make(t) for t in workflow.tools]))


def answering_tool(tool: Tool, answer: Any) -> Tool:
    """``tool`` with its function replaced by ``answer(tool, ctx, arguments)`` (async)."""

    async def run(ctx: ToolContext, **arguments: Any) -> JsonValue:
        result: JsonValue = await answer(tool, ctx, arguments)
        return result

    return dataclasses.replace(tool, function=run, wants_context=True, _is_async=True)


def recorded_tools(workflow: Workflow, recording: Recording) -> Workflow:
    """``workflow`` whose every tool answers from ``recording`` and runs nothing."""

    async def answer(tool: Tool, ctx: ToolContext, arguments: Mapping[str, Any]) -> JsonValue:
        return recording.tool_answer(tool.name, ctx)

    return replace_tools(workflow, lambda t: answering_tool(t, answer))


def providers(workflow: Workflow) -> Mapping[str, str]:
    return {name: spec.model.provider for name, spec in workflow.agents.items()}


def recorded_models(workflow: Workflow, recording: Recording) -> dict[str, RecordedModel]:
    """One recorded model per agent, reporting the agent's configured provider."""
    shared: dict[str, RecordedModel] = {}
    out: dict[str, RecordedModel] = {}
    for agent, provider in providers(workflow).items():
        out[agent] = shared.setdefault(provider, RecordedModel(recording, provider))
    return out
