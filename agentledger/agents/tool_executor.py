"""The tool executor: runs requested tools, at most once per idempotency key.

* A key already completed in this task is answered from the idempotency ledger
  (``replayed=True``) without running anything.
* A tool with side effects gets a durable ``tool_call_started`` first. If the process dies
  while it runs, the start marker is found on recovery with no outcome: the call is
  reported as ``outcome_unknown`` rather than silently run again, unless the tool
  declares itself safe to retry.
* A read-only tool runs directly; after a crash it simply runs again.
"""

from __future__ import annotations

import time

import orjson

from agentledger.agents.context import ProcessorContext
from agentledger.errors import ToolError
from agentledger.schemas import (
    Event,
    EventBase,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolCallStarted,
)
from agentledger.schemas.codec import MAX_EVENT_BYTES
from agentledger.security import guard
from agentledger.tools.registry import ToolContext

MAX_RESULT_BYTES = MAX_EVENT_BYTES // 2


class ToolExecutor:
    handles = frozenset({"tool_call_requested", "tool_call_started"})

    async def handle(self, event: Event, ctx: ProcessorContext) -> list[EventBase]:
        if ctx.state.terminal:
            return []
        match event:
            case ToolCallRequested():
                return await self._on_request(event, ctx)
            case ToolCallStarted():
                return await self._on_started(event, ctx)
        return []

    async def _on_request(self, event: ToolCallRequested, ctx: ProcessorContext) -> list[EventBase]:
        ledger = ctx.state.tool_results
        if event.idempotency_key in ledger:
            return [
                ToolCallCompleted.caused_by(
                    event,
                    subtask_id=event.subtask_id,
                    call_id=event.call_id,
                    tool=event.tool,
                    idempotency_key=event.idempotency_key,
                    result=ledger[event.idempotency_key],
                    replayed=True,
                )
            ]
        tool = ctx.runtime.workflow.tools.get(event.tool)
        if tool is not None and tool.side_effect:
            return [
                ToolCallStarted.caused_by(
                    event,
                    subtask_id=event.subtask_id,
                    call_id=event.call_id,
                    tool=event.tool,
                    idempotency_key=event.idempotency_key,
                )
            ]
        return await self._execute(event, event, ctx)

    async def _on_started(self, event: ToolCallStarted, ctx: ProcessorContext) -> list[EventBase]:
        tool = ctx.runtime.workflow.tools.get(event.tool)
        if ctx.recovering and not (tool is not None and tool.safe_to_retry):
            return [
                _failed(
                    event,
                    event,
                    "outcome_unknown",
                    f"the process stopped while {event.tool!r} was running; whether its side "
                    "effect happened is unknown, and the tool is not declared safe_to_retry, "
                    "so it was not run again. Check the target system for idempotency key "
                    f"{event.idempotency_key}.",
                )
            ]
        request = ctx.state.tool_requests.get(event.idempotency_key)
        if request is None:
            return [
                _failed(
                    event,
                    event,
                    "internal_error",
                    "no tool_call_requested event matches this start marker",
                )
            ]
        return await self._execute(request, event, ctx)

    async def _execute(
        self, request: ToolCallRequested, cause: EventBase, ctx: ProcessorContext
    ) -> list[EventBase]:
        tool = ctx.runtime.workflow.tools.get(request.tool)
        if tool is None:
            return [
                _failed(cause, request, "unknown_tool", f"tool {request.tool!r} is not registered")
            ]
        policy = ctx.runtime.workflow.tool_policies.get(request.tool)
        tool_ctx = ToolContext(
            task_id=request.task_id,
            subtask_id=request.subtask_id,
            agent=request.agent or "",
            call_id=request.call_id,
            idempotency_key=request.idempotency_key,
            sandbox=ctx.runtime.sandbox,
            allowed_domains=policy.allowed_domains if policy is not None else None,
        )
        started = time.perf_counter()
        try:
            arguments = guard.resolve_for(tool, request.arguments, ctx.runtime)
            result = await tool.run(arguments, tool_ctx)
            size = len(orjson.dumps(result))
        except ToolError as exc:
            return [_failed(cause, request, exc.kind, str(exc), started)]
        except TypeError as exc:  # orjson: the result is not JSON-serialisable
            message = f"tool {request.tool!r} returned a value that is not JSON: {exc}"
            return [_failed(cause, request, "invalid_result", message, started)]
        if size > MAX_RESULT_BYTES:
            message = f"tool {request.tool!r} returned {size} bytes, over the {MAX_RESULT_BYTES}-byte limit"
            return [_failed(cause, request, "result_too_large", message, started)]
        # Untrusted data: screened for injection before it is recorded or seen by a model.
        result, flagged = guard.screen_tool_result(request, cause, result, ctx.runtime)
        return [
            *flagged,
            ToolCallCompleted.caused_by(
                cause,
                subtask_id=request.subtask_id,
                call_id=request.call_id,
                tool=request.tool,
                idempotency_key=request.idempotency_key,
                result=result,
                latency_ms=(time.perf_counter() - started) * 1000,
            ),
        ]


def _failed(
    cause: EventBase,
    call: ToolCallRequested | ToolCallStarted,
    kind: str,
    message: str,
    started: float | None = None,
) -> ToolCallFailed:
    """The failure of ``call``, caused by ``cause``; latency counted from ``started``."""
    return ToolCallFailed.caused_by(
        cause,
        subtask_id=call.subtask_id,
        call_id=call.call_id,
        tool=call.tool,
        idempotency_key=call.idempotency_key,
        error_kind=kind,
        message=message,
        latency_ms=0.0 if started is None else (time.perf_counter() - started) * 1000,
    )
