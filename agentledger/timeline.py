"""Readable one-line descriptions of events, and summaries of task state, for people."""

from __future__ import annotations

import orjson

from agentledger.projections.task_state import TaskState
from agentledger.schemas import (
    AgentOutputProduced,
    AgentStepStarted,
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    CircuitStateChanged,
    ContextSummarized,
    Event,
    FailurePolicyApplied,
    GoalSubmitted,
    HandoffAccepted,
    HandoffRejected,
    InjectionSuspected,
    LimitReached,
    LlmAttemptFailed,
    LlmCallCompleted,
    LlmCallFailed,
    LlmFallbackUsed,
    LlmOutputModeLowered,
    OutputRejected,
    OutputsAggregated,
    PlanClamped,
    PlanRejected,
    RawValueReleased,
    RunInterrupted,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    SubtaskPlanned,
    SubtaskPlanRejected,
    SubtaskSkipped,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskLeaseTakenOver,
    TaskPlanned,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    ToolCallRetryScheduled,
    ToolCallStarted,
    UntrustedArgument,
)
from agentledger.schemas.mcp import McpToolsPinned
from agentledger.schemas.memory import MemoryErased, MemoryWritten


def _short(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(event: Event) -> str:
    """What happened, in a few words."""
    match event:
        case GoalSubmitted():
            return f"goal submitted to {event.workflow.name}: {_short(event.goal)}"
        case TaskPlanned():
            parts = []
            for s in event.plan.subtasks:
                deps = f" after {','.join(s.depends_on)}" if s.depends_on else ""
                parts.append(f"{s.id}({s.agent}{deps})")
            return f"plan (attempt {event.attempt}): " + ", ".join(parts)
        case SubtaskPlanned():
            parts = []
            for s in event.plan.subtasks:
                deps = f" after {','.join(s.depends_on)}" if s.depends_on else ""
                parts.append(f"{s.id}({s.agent}{deps})")
            return (
                f"{event.subtask_id} planned (level {event.level}, attempt {event.attempt}): "
                + ", ".join(parts)
            )
        case SubtaskPlanRejected():
            return (
                f"plan of {event.subtask_id} rejected (level {event.level}, attempt "
                f"{event.attempt}): {_short('; '.join(event.problems), 120)}"
            )
        case FailurePolicyApplied():
            return f"{event.subtask_id} on_failure {event.policy} -> {event.action}: {event.detail}"
        case SubtaskSkipped():
            return f"{event.subtask_id} skipped, default output {_short(event.output, 60)}"
        case PlanRejected():
            return (
                f"plan rejected (attempt {event.attempt}): {_short('; '.join(event.problems), 120)}"
            )
        case SubtaskAssigned():
            inputs = f" with inputs from {', '.join(event.inputs)}" if event.depends_on else ""
            return f"{event.subtask_id} assigned (attempt {event.attempt}){inputs}"
        case AgentStepStarted():
            extra = " after feedback" if event.feedback else ""
            return f"{event.subtask_id} step {event.iteration}{extra}"
        case LlmCallCompleted():
            what = (
                "tool calls " + ", ".join(c.tool for c in event.tool_calls)
                if event.tool_calls
                else "answer " + _short(event.content or "", 50)
            )
            tokens = "tok est." if event.usage_source == "estimated" else "tok"
            cost = "unpriced" if event.unpriced else f"${event.cost_usd:.4f}"
            return (
                f"{event.subtask_id} {event.model}: {what} "
                f"[{event.usage.input_tokens}+{event.usage.output_tokens} {tokens}, "
                f"{cost}, {event.latency_ms:.0f} ms]"
            )
        case LlmAttemptFailed():
            wait = f", retry in {event.delay_s:.2f}s" if event.delay_s else ""
            status = f"HTTP {event.status_code} " if event.status_code else ""
            return (
                f"{event.subtask_id} {event.model} attempt {event.attempt} failed "
                f"({status}{event.error_kind}){wait}"
            )
        case LlmOutputModeLowered():
            return (
                f"{event.subtask_id} {event.model} refused {event.from_mode}: using "
                f"{event.to_mode} ({_short(event.reason, 80)})"
            )
        case LlmFallbackUsed():
            return (
                f"{event.subtask_id} {event.from_model} gave up ({event.error_kind}): "
                f"falling back to {event.to_model}"
            )
        case PlanClamped():
            cuts = ", ".join(
                f"{c.subtask}.{c.setting} {c.asked}->{c.allowed}" for c in event.clamps
            )
            return f"plan clamped to the workflow's bounds: {cuts}"
        case LlmCallFailed():
            return f"{event.subtask_id} {event.model} FAILED ({event.error_kind}): {_short(event.message)}"
        case ToolCallRequested():
            return f"{event.subtask_id} -> {event.tool}({_short(event.arguments, 60)})"
        case ToolCallStarted():
            return f"{event.subtask_id} {event.tool} started (key {event.idempotency_key[:8]})"
        case ToolCallCompleted():
            replay = " (from idempotency ledger)" if event.replayed else ""
            return f"{event.subtask_id} <- {event.tool}: {_short(event.result, 60)}{replay}"
        case ToolCallFailed():
            return f"{event.subtask_id} <- {event.tool} FAILED ({event.error_kind}): {_short(event.message)}"
        case ToolCallRejected():
            return f"{event.subtask_id} x {event.tool} refused ({event.error_kind}): {_short(event.reason)}"
        case AgentOutputProduced():
            return f"{event.subtask_id} output: {_short(event.output, 70)}"
        case OutputRejected():
            retry = "will retry" if event.will_retry else "giving up"
            return (
                f"{event.subtask_id} output rejected ({retry}): {_short('; '.join(event.errors))}"
            )
        case SubtaskCompleted():
            return f"{event.subtask_id} completed"
        case SubtaskFailed():
            return f"{event.subtask_id} FAILED ({event.error_kind}): {_short(event.reason, 120)}"
        case ToolCallRetryScheduled():
            return (
                f"{event.subtask_id} <- {event.tool} attempt {event.attempt}/{event.max_attempts} "
                f"failed ({event.error_kind}), retry in {event.delay_s:.3f} s: {_short(event.error)}"
            )
        case CircuitStateChanged():
            until = f", trial after {event.reopens_at:%H:%M:%S}" if event.reopens_at else ""
            return (
                f"circuit {event.scope} {event.name}: {event.from_state} -> {event.to_state} "
                f"({event.consecutive_failures}/{event.threshold} failures{until})"
            )
        case ContextSummarized():
            return (
                f"{event.subtask_id} context compacted ({event.method}): {event.turns_compacted} "
                f"turns, {event.tokens_before} -> {event.tokens_after} tokens"
            )
        case LimitReached():
            return (
                f"limit {event.severity}: {event.scope} {event.limit} "
                f"{event.value:g}/{event.threshold:g} {event.detail}"
            ).rstrip()
        case HandoffAccepted():
            return (
                f"handoff {event.hop}: {event.from_agent} -> {event.to_agent} "
                f"({event.from_subtask} -> {event.to_subtask}) {_short(event.note, 60)}"
            ).rstrip()
        case HandoffRejected():
            retry = "will retry" if event.will_retry else "giving up"
            return (
                f"{event.subtask_id} handoff {event.from_agent} -> {event.to_agent} refused "
                f"({event.error_kind}, {retry}): {_short(event.reason)}"
            )
        case OutputsAggregated():
            winner = f" winner {event.winner}" if event.winner else ""
            return (
                f"{event.subtask_id} {event.method} over {', '.join(event.candidates)}:{winner} "
                f"{_short(event.result, 60)} ({_short(event.detail, 80)})"
            )
        case TaskCompleted():
            return f"task completed: {_short(event.result, 80)}"
        case TaskFailed():
            return f"task FAILED ({event.error_kind}): {_short(event.reason, 160)}"
        case TaskCancelled():
            return f"task cancelled: {event.reason}"
        case ApprovalRequested():
            return (
                f"{event.subtask_id} {event.tool}({_short(event.arguments, 50)}) needs approval "
                f"{event.approval_id} ({event.risk}, until {event.expires_at:%Y-%m-%d %H:%M} UTC)"
            )
        case ApprovalGranted():
            note = f": {_short(event.note, 60)}" if event.note else ""
            return f"{event.approval_id} {event.tool} granted by {event.approved_by}{note}"
        case ApprovalDenied():
            return f"{event.approval_id} {event.tool} DENIED by {event.denied_by}: {_short(event.reason, 80)}"
        case ApprovalExpired():
            return f"{event.approval_id} {event.tool} expired (deadline {event.deadline:%Y-%m-%d %H:%M:%S} UTC)"
        case ApprovalEscalated():
            return (
                f"{event.approval_id} {event.tool} escalated to {event.escalate_to} "
                f"(until {event.expires_at:%Y-%m-%d %H:%M} UTC)"
            )
        case InjectionSuspected():
            return (
                f"injection suspected in {event.source} ({', '.join(event.rules)}), "
                f"{event.action}: {_short(event.excerpt, 80)}"
            )
        case TaskLeaseTakenOver():
            return (
                f"took the task over from {event.previous_owner} ({event.reason}, "
                f"last heartbeat {event.previous_heartbeat_age_s:.0f}s ago)"
            )
        case RunInterrupted():
            left = ", ".join(event.cut_short) or "nothing"
            return f"{event.signal}: run stopped; cut short after {event.grace_s:g}s: {left}"
        case UntrustedArgument():
            return (
                f"{event.subtask_id} {event.tool}.{event.argument} = {_short(event.value, 40)} "
                f"comes from untrusted data ({', '.join(event.sources)}): {event.action}"
            )
        case RawValueReleased():
            return (
                f"{event.subtask_id} {event.tool}.{event.argument} got the raw {event.category} "
                f"behind {event.placeholder} (granted by the {event.granted_by})"
            )
        case MemoryWritten():
            return f"remembered {event.namespace}/{event.key}: {_short(event.text, 70)}"
        case MemoryErased():
            return f"forgot {event.namespace}" + (f"/{event.key}" if event.key else " (all)")
        case McpToolsPinned():
            names = ", ".join(t.name for t in event.tools) or "none"
            return f"MCP server {event.server} ({event.transport}) pinned: {names}"
    return event.type


def line(event: Event) -> str:
    clock = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
    agent = event.agent or "-"
    return f"{event.seq:>4} {clock} {agent:<12} {event.type:<22} {describe(event)}"


def summary(state: TaskState) -> str:
    """A multi-line account of a task's state."""
    wf = state.workflow.name if state.workflow else "?"
    out = [
        f"task      {state.task_id}",
        f"workflow  {wf}",
        f"status    {state.status}",
        f"goal      {_short(state.goal, 100)}",
        f"events    {state.last_seq}",
        f"usage     {state.llm_calls} LLM calls, {state.tool_calls} tool calls, "
        f"{state.tokens_in}+{state.tokens_out} tokens, ${state.cost_usd:.4f}"
        + (f" (+{state.unpriced_calls} unpriced calls)" if state.unpriced_calls else ""),
    ]
    if state.started_at and state.ended_at:
        out.append(f"duration  {(state.ended_at - state.started_at).total_seconds():.2f} s")
    if state.subtasks:
        out.append("subtasks")
        for sub in state.subtasks.values():
            deps = f" after {','.join(sub.depends_on)}" if sub.depends_on else ""
            err = f" — {_short(sub.error, 80)}" if sub.error else ""
            out.append(
                f"  {sub.id:<14} {sub.agent:<12} {sub.status:<10} iter {sub.iteration}{deps}{err}"
            )
    if state.handoffs.hops:
        out.append("handoffs  " + " -> ".join(state.handoffs.path()))
    if state.iterations:
        out.append(
            "iterations " + ", ".join(f"{a}={n}" for a, n in sorted(state.iterations.items()))
        )
    pending = state.pending_approvals
    if pending and not state.terminal:
        out.append(f"waiting for approval of {len(pending)} tool call(s)")
        for a in pending:
            out.append(
                f"  {a.id}  {a.tool} ({a.risk}) for {a.agent}/{a.subtask_id}, "
                f"expires {a.expires_at:%Y-%m-%d %H:%M:%S} UTC"
            )
    for w in state.warnings:
        out.append(f"limit     {w}")
    if state.failure:
        out.append(f"failure   {state.failure}")
    return "\n".join(out)


def render_result(result: object) -> str:
    if isinstance(result, str):
        return result
    return orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
