"""The tool executor: runs requested tools, at most once per idempotency key.

* A key already completed in this task is answered from the idempotency ledger
  (``replayed=True``) without running anything.
* A tool with side effects gets a durable ``tool_call_started`` first. If the process dies
  while it runs, the start marker is found on recovery with no outcome: the call is
  reported as ``outcome_unknown`` rather than silently run again, unless the tool
  declares itself safe to retry.
* A read-only tool runs directly; after a crash it simply runs again.
* A tool that needs approval (``approvals`` in the workflow) waits: ``approval_requested``
  instead of running, and the grant (agents/approvals.py) continues with ``proceed``.
* A tool whose circuit breaker is open is refused (``tool_call_rejected``, ``circuit_open``).
* A transient failure is retried after a backoff recorded in ``tool_call_retry_scheduled``
  (see agents/backoff.py); after a crash the retry waits out what is left of the delay.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from agentledger.agents.approval_policy import approval_gate
from agentledger.agents.backoff import backoff_delay, may_retry, remaining_delay
from agentledger.agents.breakers import Admission, CircuitBreaker
from agentledger.agents.context import ProcessorContext
from agentledger.errors import ToolError
from agentledger.schemas import (
    Event,
    EventBase,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    ToolCallRetryScheduled,
    ToolCallStarted,
)
from agentledger.schemas.codec import MAX_EVENT_BYTES
from agentledger.security import guard
from agentledger.tools.registry import BreakerSettings, Tool, ToolContext

MAX_RESULT_BYTES = MAX_EVENT_BYTES // 2


class ToolExecutor:
    handles = frozenset({"tool_call_requested", "tool_call_started", "tool_call_retry_scheduled"})

    async def handle(self, event: Event, ctx: ProcessorContext) -> list[EventBase]:
        if ctx.state.terminal:
            return []
        match event:
            case ToolCallRequested():
                return await self._on_request(event, ctx)
            case ToolCallStarted():
                return await self._on_started(event, ctx)
            case ToolCallRetryScheduled():
                return await self._on_retry(event, ctx)
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
        gate = approval_gate(event, ctx)
        if gate is not None:
            return gate
        return await self.proceed(event, event, ctx)

    async def proceed(
        self, request: ToolCallRequested, cause: EventBase, ctx: ProcessorContext
    ) -> list[EventBase]:
        """Mark a side effect's start durably, or run a tool that has none (also the
        reaction to an approval granted for ``request``). An open breaker refuses it."""
        tool = ctx.runtime.workflow.tools.get(request.tool)
        admission = _admit(cause, ctx, tool)
        if not admission.allowed:
            return [_circuit_open(cause, request, admission)]
        if tool is not None and tool.side_effect:
            return [
                *admission.events,
                ToolCallStarted.caused_by(
                    cause,
                    agent=request.agent,
                    subtask_id=request.subtask_id,
                    call_id=request.call_id,
                    tool=request.tool,
                    idempotency_key=request.idempotency_key,
                ),
            ]
        return [*admission.events, *await self._execute(request, cause, ctx)]

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

    async def _on_retry(
        self, event: ToolCallRetryScheduled, ctx: ProcessorContext
    ) -> list[EventBase]:
        request = ctx.state.tool_requests.get(event.idempotency_key)
        if request is None:  # settled meanwhile
            return []
        await asyncio.sleep(remaining_delay(event.occurred_at, event.delay_s))
        admission = _admit(event, ctx, ctx.runtime.workflow.tools.get(event.tool))
        if not admission.allowed:
            return [_circuit_open(event, request, admission)]
        outcome = await self._execute(request, event, ctx, attempt=event.attempt + 1)
        return [*admission.events, *outcome]

    async def _execute(
        self,
        request: ToolCallRequested,
        cause: EventBase,
        ctx: ProcessorContext,
        *,
        attempt: int = 1,
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
            memory=ctx.runtime.memory,
        )
        breaker, settings = _breaker(ctx, tool)
        started = time.perf_counter()
        # Placeholders resolved only where the tool declares them; secrets released are recorded.
        arguments, released = guard.release_for(request, cause, tool, ctx.runtime)
        try:
            result = await tool.run(arguments, tool_ctx)
        except ToolError as exc:
            transitions = breaker.record(cause, settings, ok=False)
            return [
                *released,
                _retry_or_fail(tool, request, cause, exc, attempt, started),
                *transitions,
            ]
        # The tool answered: that counts for its breaker even if the answer is unusable.
        transitions = breaker.record(cause, settings, ok=True)
        try:
            size = len(orjson.dumps(result))
        except TypeError as exc:  # orjson: the result is not JSON-serialisable
            message = f"tool {request.tool!r} returned a value that is not JSON: {exc}"
            return [
                *released,
                _failed(cause, request, "invalid_result", message, started),
                *transitions,
            ]
        if size > MAX_RESULT_BYTES:
            message = f"tool {request.tool!r} returned {size} bytes, over the {MAX_RESULT_BYTES}-byte limit"
            return [
                *released,
                _failed(cause, request, "result_too_large", message, started),
                *transitions,
            ]
        # Untrusted data: screened for injection before it is recorded or seen by a model.
        result, flagged = guard.screen_tool_result(request, cause, result, ctx.runtime)
        return [
            *released,
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
            *(tool.records(request, cause) if tool.records is not None else ()),
            *transitions,
        ]


def _breaker(ctx: ProcessorContext, tool: Tool) -> tuple[CircuitBreaker, BreakerSettings]:
    settings = tool.circuit_breaker or ctx.runtime.workflow.circuit_breaker
    return ctx.runtime.breakers.get("tool", tool.name), settings


def _admit(cause: EventBase, ctx: ProcessorContext, tool: Tool | None) -> Admission:
    if tool is None:  # reported as unknown_tool when it would run
        return Admission(True, [])
    breaker, settings = _breaker(ctx, tool)
    return breaker.admit(cause, settings)


def _circuit_open(
    cause: EventBase, request: ToolCallRequested, admission: Admission
) -> ToolCallRejected:
    """The refusal of a call while its tool's breaker is open; the agent is told why."""
    return ToolCallRejected.caused_by(
        cause,
        subtask_id=request.subtask_id,
        iteration=request.iteration,
        call_id=request.call_id,
        tool=request.tool,
        reason=admission.reason,
        error_kind="circuit_open",
    )


def _retry_or_fail(
    tool: Tool,
    request: ToolCallRequested,
    cause: EventBase,
    exc: ToolError,
    attempt: int,
    started: float,
) -> EventBase:
    """Schedule the next attempt of a transient failure, or record the call as failed."""
    if may_retry(tool, exc, attempt):
        return ToolCallRetryScheduled.caused_by(
            cause,
            subtask_id=request.subtask_id,
            call_id=request.call_id,
            tool=request.tool,
            idempotency_key=request.idempotency_key,
            attempt=attempt,
            max_attempts=tool.max_attempts,
            delay_s=backoff_delay(tool, attempt),
            error_kind=exc.kind,
            error=str(exc),
        )
    message = str(exc) if attempt == 1 else f"{exc} (after {attempt} attempts)"
    return _failed(cause, request, exc.kind, message, started)


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
