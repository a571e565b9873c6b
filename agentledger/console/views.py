"""What the console shows, computed purely from a task's events (and its folded state).

Every function here takes events the log already holds (masked when they were written)
and returns plain JSON-ready dicts; nothing is un-masked and nothing is fetched. The same
functions serve a live run and a past one, and the replay slider is ``run_view`` over the
events up to a seq.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import JsonValue

from agentledger import timeline
from agentledger.projections.task_state import TaskState, evolve, fold
from agentledger.schemas import (
    AgentStepStarted,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Event,
    InjectionSuspected,
    LimitReached,
    LlmCallCompleted,
    LlmCallFailed,
    SubtaskAssigned,
    TaskForked,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
)
from agentledger.schemas.codec import to_dict


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_row(state: TaskState) -> dict[str, Any]:
    """One line of the runs list."""
    duration = (
        (state.ended_at - state.started_at).total_seconds()
        if state.started_at and state.ended_at
        else None
    )
    return {
        "task_id": state.task_id,
        "status": state.status,
        "workflow": state.workflow.name if state.workflow else None,
        "goal": state.goal,
        "started_at": _iso(state.started_at),
        "ended_at": _iso(state.ended_at),
        "duration_s": duration,
        "tokens": state.tokens_in + state.tokens_out,
        "cost_usd": state.cost_usd,
        "events": state.last_seq,
        "pending_approvals": len(state.pending_approvals) if not state.terminal else 0,
    }


def event_row(event: Event) -> dict[str, Any]:
    """One line of the timeline: the envelope, a readable description and the event itself."""
    return {
        "seq": event.seq,
        "type": event.type,
        "agent": event.agent,
        "occurred_at": event.occurred_at.isoformat(),
        "text": timeline.describe(event),
        "event": to_dict(event),
    }


def _attempts(events: Sequence[Event]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        if isinstance(e, SubtaskAssigned):
            out[e.subtask_id] = max(out.get(e.subtask_id, 0), e.attempt)
    return out


def dag(state: TaskState, events: Sequence[Event]) -> dict[str, Any]:
    """Subtasks as nodes (status, agent, attempts, iteration) and dependency edges."""
    attempts = _attempts(events)
    nodes = [
        {
            "id": s.id,
            "agent": s.agent,
            "status": s.status,
            "attempt": attempts.get(s.id, s.attempt),
            "iteration": s.iteration,
            "description": s.description,
            "error": s.error,
        }
        for s in state.subtasks.values()
    ]
    edges = [
        {"source": dep, "target": s.id}
        for s in state.subtasks.values()
        for dep in s.depends_on
        if dep in state.subtasks
    ]
    return {"nodes": nodes, "edges": edges}


def llm_calls(task_id: str, events: Sequence[Event]) -> list[dict[str, Any]]:
    """Each LLM call with the conversation its subtask had when it was made (as logged,
    masked), the response, model, tokens, cost and latency."""
    out: list[dict[str, Any]] = []
    state = TaskState(task_id=task_id)
    for e in events:
        if isinstance(e, LlmCallCompleted | LlmCallFailed):
            sub = state.subtasks.get(e.subtask_id)
            prompt: list[JsonValue] = (
                [{"role": m.role, "content": m.content} for m in sub.turns] if sub else []
            )
            if sub is not None and sub.inputs:
                prompt.insert(0, {"role": "inputs", "content": dict(sub.inputs)})
            if sub is not None and sub.description:
                prompt.insert(0, {"role": "subtask", "content": sub.description})
            row: dict[str, Any] = {
                "seq": e.seq,
                "subtask_id": e.subtask_id,
                "agent": e.agent,
                "model": e.model,
                "provider": e.provider,
                "iteration": e.iteration,
                "latency_ms": e.latency_ms,
                "attempts": e.attempts,
                "prompt": prompt,
            }
            if isinstance(e, LlmCallCompleted):
                row |= {
                    "ok": True,
                    "response": e.content,
                    "tool_calls": [c.model_dump(mode="json") for c in e.tool_calls],
                    "finish_reason": e.finish_reason,
                    "input_tokens": e.usage.input_tokens,
                    "output_tokens": e.usage.output_tokens,
                    "cost_usd": e.cost_usd,
                }
            else:
                row |= {"ok": False, "error_kind": e.error_kind, "response": e.message}
            out.append(row)
        state = evolve(state, e)
    return out


def tool_calls(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Each tool call: arguments, idempotency key, approval and outcome, keyed by call id."""
    calls: dict[str, dict[str, Any]] = {}
    by_approval: dict[str, str] = {}
    for e in events:
        if isinstance(e, ToolCallRequested):
            calls[e.call_id] = {
                "seq": e.seq,
                "call_id": e.call_id,
                "subtask_id": e.subtask_id,
                "agent": e.agent,
                "tool": e.tool,
                "arguments": e.arguments,
                "idempotency_key": e.idempotency_key,
                "status": "requested",
                "result": None,
                "approval": None,
            }
        elif isinstance(e, ToolCallRejected):
            row = calls.setdefault(
                e.call_id,
                {
                    "seq": e.seq,
                    "call_id": e.call_id,
                    "subtask_id": e.subtask_id,
                    "agent": e.agent,
                    "tool": e.tool,
                    "arguments": None,
                    "idempotency_key": None,
                    "approval": None,
                },
            )
            row |= {"status": "rejected", "result": f"{e.error_kind}: {e.reason}"}
        elif isinstance(e, ApprovalRequested):
            by_approval[e.approval_id] = e.call_id
            if e.call_id in calls:
                calls[e.call_id]["approval"] = {
                    "id": e.approval_id,
                    "status": "pending",
                    "risk": e.risk,
                }
        elif isinstance(e, ApprovalGranted | ApprovalDenied):
            call = calls.get(by_approval.get(e.approval_id, ""))
            if call is not None and call["approval"] is not None:
                if isinstance(e, ApprovalGranted):
                    call["approval"] |= {"status": "granted", "by": e.approved_by, "text": e.note}
                else:
                    call["approval"] |= {"status": "denied", "by": e.denied_by, "text": e.reason}
        elif isinstance(e, ToolCallCompleted) and e.call_id in calls:
            calls[e.call_id] |= {
                "status": "completed",
                "result": e.result,
                "latency_ms": e.latency_ms,
                "replayed": e.replayed,
            }
        elif isinstance(e, ToolCallFailed) and e.call_id in calls:
            calls[e.call_id] |= {
                "status": "failed",
                "result": f"{e.error_kind}: {e.message}",
                "latency_ms": e.latency_ms,
            }
    return list(calls.values())


def flags(events: Sequence[Event]) -> dict[str, list[dict[str, Any]]]:
    """Limits hit and injection suspicions."""
    limits = [
        {"seq": e.seq, "agent": e.agent, "text": timeline.describe(e), "severity": e.severity}
        for e in events
        if isinstance(e, LimitReached)
    ]
    injections = [
        {"seq": e.seq, "agent": e.agent, "text": timeline.describe(e), "action": e.action}
        for e in events
        if isinstance(e, InjectionSuspected)
    ]
    return {"limits": limits, "injections": injections}


def pending_approvals(state: TaskState) -> list[dict[str, Any]]:
    if state.terminal:
        return []
    workflow = state.workflow.name if state.workflow else None
    return [{**a.as_row(state.task_id), "workflow": workflow} for a in state.pending_approvals]


def lineage(events: Sequence[Event]) -> dict[str, Any] | None:
    """A fork's parent task and fork point (issue #15: status and the console show them)."""
    forked = next((e for e in reversed(events) if isinstance(e, TaskForked)), None)  # its own
    if forked is None:
        return None
    return {
        "parent_task_id": forked.parent_task_id,
        "fork_seq": forked.fork_seq,
        "seq": forked.seq,
        "workflow_path": forked.workflow_path,
        "model_overrides": dict(forked.model_overrides),
        "edited_outputs": list(forked.edited_outputs),
    }


def run_view(task_id: str, events: Sequence[Event], until: int | None = None) -> dict[str, Any]:
    """Everything the run page shows, as of ``until`` (default: the last event)."""
    last = max((e.seq for e in events), default=0)
    shown = [e for e in events if until is None or e.seq <= until]
    state = fold(task_id, list(shown))
    return {
        "run": run_row(state),
        "lineage": lineage(events),  # from all events: the slider does not hide the parent
        "last_seq": last,
        "until": until if until is not None else last,
        "summary": timeline.summary(state),
        "dag": dag(state, shown),
        "steps": sum(1 for e in shown if isinstance(e, AgentStepStarted)),
        "llm_calls": llm_calls(task_id, shown),
        "tool_calls": tool_calls(shown),
        "flags": flags(shown),
        "approvals": pending_approvals(state),
        "failure": state.failure,
        "result": state.result,
    }
