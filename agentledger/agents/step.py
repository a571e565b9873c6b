"""The agent step: one iteration of an agent's loop.

``subtask_assigned`` starts iteration 1; ``agent_step_started`` calls the model (the only
I/O here), unless the agent's context is over its threshold (it is compacted first, into
``context_summarized``, which then calls the model) or its circuit breaker is open;
``llm_call_completed`` turns tool calls into requests (or refusals) and a final answer into
a validated output; the outcome that settles a step's last tool call starts
the next iteration, unless the iteration cap stops it.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, JsonValue, ValidationError

from agentledger.agents import aggregate, call_budget, handoffs
from agentledger.agents.context import ProcessorContext
from agentledger.agents.context_window import compact_if_needed
from agentledger.agents.llm_attempts import attempt_events
from agentledger.agents.plans import delegates
from agentledger.agents.prompts import build_request, output_model_for
from agentledger.agents.stops import rejection_stop, stop
from agentledger.agents.workflow import AgentSpec
from agentledger.errors import ModelError
from agentledger.llm.base import canonical_json
from agentledger.llm.pricing import serving_settings
from agentledger.memory import access as memory_access
from agentledger.projections.task_state import SubtaskState, tool_call_key
from agentledger.schemas import (
    AgentOutputProduced,
    AgentStepStarted,
    ContextSummarized,
    Event,
    EventBase,
    LimitReached,
    LlmCallCompleted,
    LlmCallFailed,
    OutputRejected,
    RecordedToolCall,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
)
from agentledger.security import guard

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
MAX_CONTENT_CHARS = 200_000


def idempotency_key(
    task_id: str, subtask_id: str, iteration: int, tool: str, arguments: JsonValue
) -> str:
    """Same task, subtask, step, tool and (canonical) arguments: same key."""
    body = canonical_json([task_id, subtask_id, iteration, tool, arguments])
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def parse_output(content: str | None, model: type[BaseModel] | None) -> tuple[JsonValue, list[str]]:
    """The agent's final answer as JSON for its contract, or the reasons it is not."""
    if content is None or not content.strip():
        return None, ["the answer was empty: give a final answer"]
    if model is None:
        return content, []
    text = content
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, [f"the answer is not valid JSON ({exc}); answer with one JSON object"]
    try:
        return model.model_validate(data).model_dump(mode="json"), []
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:10]
        ]


class AgentStep:
    handles = frozenset(
        {
            "subtask_assigned",
            "agent_step_started",
            "context_summarized",
            "llm_call_completed",
            "tool_call_rejected",
            "tool_call_completed",
            "tool_call_failed",
        }
    )

    async def handle(self, event: Event, ctx: ProcessorContext) -> list[EventBase]:
        if ctx.state.terminal:
            return []
        match event:
            case SubtaskAssigned() if delegates(
                ctx.runtime.workflow, event.agent or "", event.subtask_id
            ):
                return []  # a sub-orchestrator's subtask is worked by its nested plan
            case SubtaskAssigned():
                spec = ctx.runtime.workflow.agents.get(event.agent or "")
                if spec and spec.aggregate and spec.aggregate.method != "judge":
                    return aggregate.combine(event, spec.aggregate)  # no LLM call
                return [AgentStepStarted.caused_by(event, subtask_id=event.subtask_id, iteration=1)]
            case AgentStepStarted() | ContextSummarized():
                return await self._call_model(event, ctx)
            case LlmCallCompleted():
                return self._on_response(event, ctx)
            case ToolCallRejected() | ToolCallCompleted() | ToolCallFailed():
                return self._on_tool_outcome(event, ctx)
        return []

    def _spec(self, ctx: ProcessorContext, sub: SubtaskState) -> AgentSpec:
        return ctx.runtime.workflow.agents[sub.agent]

    async def _call_model(
        self, event: AgentStepStarted | ContextSummarized, ctx: ProcessorContext
    ) -> list[EventBase]:
        sub = ctx.state.subtasks.get(event.subtask_id)
        if sub is None or sub.status != "running" or sub.iteration != event.iteration:
            return []
        spec = self._spec(ctx, sub)
        model = ctx.runtime.models[spec.name]
        request = build_request(ctx, spec, sub)
        serving = serving_settings(model, spec.model)
        refused = call_budget.pre_call_stop(event, ctx, serving, request.model, sub.id)
        if refused:
            return refused
        if isinstance(event, AgentStepStarted):  # not again after a compaction: call then
            compacted = await compact_if_needed(event, ctx, spec, sub, request, model)
            if compacted:
                return compacted
        breaker_settings = spec.circuit_breaker or ctx.runtime.workflow.circuit_breaker
        breaker = ctx.runtime.breakers.get("agent", spec.name)
        admission = breaker.admit(event, breaker_settings)
        if not admission.allowed:
            return [
                SubtaskFailed.caused_by(
                    event, subtask_id=sub.id, reason=admission.reason, error_kind="circuit_open"
                )
            ]
        started = time.perf_counter()
        try:
            response = await model.complete(request)
        except ModelError as exc:
            latency = (time.perf_counter() - started) * 1000
            return [
                *admission.events,
                *attempt_events(
                    event,
                    exc.trail,
                    subtask_id=sub.id,
                    iteration=sub.iteration,
                    provider=model.provider,
                ),
                LlmCallFailed.caused_by(
                    event,
                    subtask_id=sub.id,
                    iteration=sub.iteration,
                    model=request.model,
                    provider=model.provider,
                    error_kind=exc.kind,
                    message=str(exc),
                    retryable=exc.retryable,
                    attempts=exc.attempts,
                    latency_ms=latency,
                ),
                *breaker.record(event, breaker_settings, ok=False),
                SubtaskFailed.caused_by(
                    event,
                    subtask_id=sub.id,
                    reason=f"model {request.model!r} failed for agent {spec.name!r}: {exc}",
                    error_kind=f"llm_{exc.kind}",
                ),
            ]
        latency = (time.perf_counter() - started) * 1000
        content = response.content
        if content is not None and len(content) > MAX_CONTENT_CHARS:
            content = content[:MAX_CONTENT_CHARS]
        price = ctx.runtime.prices.quote_response(serving, response)
        return [
            *admission.events,
            *attempt_events(
                event,
                response.trail,
                subtask_id=sub.id,
                iteration=sub.iteration,
                provider=model.provider,
            ),
            LlmCallCompleted.caused_by(
                event,
                subtask_id=sub.id,
                iteration=sub.iteration,
                model=response.model,
                provider=model.provider,
                request_digest=request.digest(),
                content=content,
                tool_calls=response.tool_calls,
                finish_reason=response.finish_reason,
                usage=response.usage,
                cost_usd=price.cost_usd,
                latency_ms=latency,
                attempts=response.attempts,
                fallback_from=spec.model.model if response.used_fallback else None,
                raw_response=response.raw,
                usage_source=response.usage_source,
                unpriced=not price.priced,
                priced_as=price.priced_as if price.priced_as != response.model else None,
            ),
            *breaker.record(event, breaker_settings, ok=True),
        ]

    def _budget_stop(self, event: LlmCallCompleted, ctx: ProcessorContext) -> list[EventBase]:
        state, limits = ctx.state, ctx.runtime.workflow.limits
        checks: list[tuple[str, float, float | None]] = [
            ("tokens", state.tokens_in + state.tokens_out, limits.max_tokens),
            ("cost_usd", state.cost_usd, limits.max_cost_usd),
        ]
        if state.started_at is not None:
            elapsed = (datetime.now(UTC) - state.started_at).total_seconds()
            checks.append(("wall_time_s", elapsed, limits.max_wall_time_s))
        for limit, value, threshold in checks:
            if threshold is not None and value > threshold:
                return stop(
                    "task",
                    event,
                    limit=limit,
                    scope="task",
                    value=value,
                    threshold=threshold,
                    subtask_id=event.subtask_id,
                    detail=f"task budget exceeded after {state.llm_calls} LLM calls",
                    reason=f"task budget exceeded: {limit} {value:g} > {threshold:g}",
                    error_kind="budget_exceeded",
                )
        return []

    def _on_response(self, event: LlmCallCompleted, ctx: ProcessorContext) -> list[EventBase]:
        sub = ctx.state.subtasks.get(event.subtask_id)
        if sub is None or sub.status != "running":
            return []
        stop = self._budget_stop(event, ctx) or call_budget.unpriced_stop(event, ctx)
        if stop:
            return stop
        return [*call_budget.unpriced_warning(event, ctx), *self._react(event, ctx, sub)]

    def _react(
        self, event: LlmCallCompleted, ctx: ProcessorContext, sub: SubtaskState
    ) -> list[EventBase]:
        spec = self._spec(ctx, sub)
        if event.tool_calls:
            loop = self._loop_stop(event, spec, sub)
            if loop:
                return loop
            outcomes = [
                self._request_or_reject(event, ctx, spec, sub, call) for call in event.tool_calls
            ]
            # A side effect steered by untrusted data is refused or held (provenance).
            outcomes = guard.check_provenance(event, ctx.state, ctx.runtime, sub, outcomes)
            return rejection_stop(event, spec, sub, outcomes) or outcomes
        output, errors = parse_output(event.content, output_model_for(ctx, spec))
        if not errors and spec.aggregate is not None:
            errors = aggregate.verdict_errors(output, sub)
        if not errors:
            output, refused = handoffs.review(event, ctx, spec, sub, output)
            if refused is not None:
                if refused.will_retry:
                    feedback = handoffs.feedback(refused)
                    return [refused, *self._next_step(event, ctx, sub, feedback=feedback)]
                reason = handoffs.failure_reason(refused)
                return [
                    refused,
                    SubtaskFailed.caused_by(
                        event, subtask_id=sub.id, reason=reason, error_kind="invalid_handoff"
                    ),
                ]
            model = output_model_for(ctx, spec)
            produced = AgentOutputProduced.caused_by(
                event,
                subtask_id=sub.id,
                output=output,
                output_model=model.__name__ if model else None,
            )
            if spec.aggregate is not None:
                return [produced, *aggregate.judged(event, sub, output)]
            return [produced, SubtaskCompleted.caused_by(event, subtask_id=sub.id, output=output)]
        retry = sub.repairs < spec.max_repairs
        rejected = OutputRejected.caused_by(
            event,
            subtask_id=sub.id,
            errors=errors,
            raw_output=(event.content or "")[:4000],
            will_retry=retry,
        )
        if retry:
            feedback = (
                "Your answer did not match the required output:\n- "
                + "\n- ".join(errors)
                + "\nAnswer again with a corrected final answer."
            )
            return [rejected, *self._next_step(event, ctx, sub, feedback=feedback)]
        return [
            rejected,
            SubtaskFailed.caused_by(
                event,
                subtask_id=sub.id,
                reason=f"output of {spec.name!r} broke its contract after {sub.repairs} repairs: "
                + "; ".join(errors),
                error_kind="invalid_output",
            ),
        ]

    def _loop_stop(
        self, event: LlmCallCompleted, spec: AgentSpec, sub: SubtaskState
    ) -> list[EventBase]:
        """Stop an agent that asks for the same tool with the same arguments again and again."""
        for call in event.tool_calls:
            # Counted in the state (as of this response), so compacted turns still count.
            count = sub.tool_call_counts[
                tool_call_key(call.tool, call.arguments, call.raw_arguments)
            ]
            if count >= spec.max_repeated_calls:
                return stop(
                    "subtask",
                    event,
                    limit="repeated_tool_call",
                    scope="agent",
                    value=count,
                    threshold=spec.max_repeated_calls,
                    subtask_id=sub.id,
                    detail=f"{call.tool}({canonical_json(call.arguments)[:120]}) asked {count} times",
                    reason=f"loop detected: {spec.name} called {call.tool!r} with the same "
                    f"arguments {count} times",
                    error_kind="loop_detected",
                )
        return []

    def _request_or_reject(
        self,
        event: LlmCallCompleted,
        ctx: ProcessorContext,
        spec: AgentSpec,
        sub: SubtaskState,
        call: RecordedToolCall,
    ) -> EventBase:
        def reject(reason: str, kind: str) -> ToolCallRejected:
            return ToolCallRejected.caused_by(
                event,
                subtask_id=sub.id,
                iteration=sub.iteration,
                call_id=call.call_id,
                tool=call.tool,
                reason=reason,
                error_kind=kind,
            )

        tool = ctx.runtime.workflow.tools.get(call.tool)
        if call.tool not in spec.tools:
            if tool is None:
                return reject(
                    f"there is no tool named {call.tool!r}; available: {list(spec.tools)}",
                    "unknown_tool",
                )
            return reject(
                f"agent {spec.name!r} is not allowed to call {call.tool!r}", "not_allowed"
            )
        if tool is None:
            return reject(f"tool {call.tool!r} is not registered", "unknown_tool")
        if call.arguments is None:
            return reject(
                f"the arguments were not a JSON object: {(call.raw_arguments or '')[:200]!r}",
                "invalid_arguments",
            )
        try:
            arguments = guard.validate_call(tool, call.arguments, ctx.runtime)
        except ValueError as exc:
            return reject(str(exc), "invalid_arguments")
        arguments, refusal = memory_access.admit(spec.memory, ctx.state, call.tool, arguments)
        if refusal is not None:
            return reject(refusal, "namespace_not_allowed")
        arguments, refusal, kind = guard.check_call(ctx.state, ctx.runtime, sub, tool, arguments)
        if refusal is not None:
            return reject(refusal, kind)
        return ToolCallRequested.caused_by(
            event,
            subtask_id=sub.id,
            iteration=sub.iteration,
            call_id=call.call_id,
            tool=call.tool,
            arguments=arguments,
            idempotency_key=idempotency_key(
                ctx.state.task_id, sub.id, sub.iteration, call.tool, arguments
            ),
        )

    def _on_tool_outcome(
        self, event: ToolCallRejected | ToolCallCompleted | ToolCallFailed, ctx: ProcessorContext
    ) -> list[EventBase]:
        sub = ctx.state.subtasks.get(event.subtask_id)
        # Edge-triggered: only the outcome that settles the step's last pending call moves on.
        if sub is None or sub.status != "running" or sub.pending_calls:
            return []
        last = sub.turns[-1] if sub.turns else None
        if last is None or last.tool_call_id != event.call_id:
            return []
        return self._next_step(event, ctx, sub, feedback=None)

    def _next_step(
        self, cause: EventBase, ctx: ProcessorContext, sub: SubtaskState, *, feedback: str | None
    ) -> list[EventBase]:
        spec = self._spec(ctx, sub)
        nxt = sub.iteration + 1
        if nxt > spec.max_iterations:
            return stop(
                "subtask",
                cause,
                agent=spec.name,
                limit="iterations",
                scope="agent",
                value=nxt,
                threshold=spec.max_iterations,
                subtask_id=sub.id,
                detail=f"{spec.name} would start iteration {nxt} of subtask {sub.id}",
                reason=f"iteration cap reached: {spec.name} used {sub.iteration} of {spec.max_iterations} iterations",
                error_kind="iteration_limit",
            )
        out: list[EventBase] = []
        if nxt == spec.warn_iterations:
            out.append(
                LimitReached.caused_by(
                    cause,
                    agent=spec.name,
                    limit="iterations",
                    scope="agent",
                    severity="warning",
                    value=nxt,
                    threshold=spec.warn_iterations,
                    subtask_id=sub.id,
                    detail=f"hard stop at {spec.max_iterations}",
                )
            )
        out.append(
            AgentStepStarted.caused_by(
                cause, agent=spec.name, subtask_id=sub.id, iteration=nxt, feedback=feedback
            )
        )
        return out
