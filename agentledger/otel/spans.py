"""OpenTelemetry spans computed from the log, following the GenAI semantic conventions.

=========================  ======================  ==============================
span                       one per                 opened by / closed by
=========================  ======================  ==============================
``invoke_workflow {wf}``   task                    goal_submitted / task_completed|failed|cancelled
``invoke_agent {agent}``   subtask attempt         subtask_assigned / subtask_completed|failed|skipped
``chat {model}``           LLM call                llm_call_completed|failed (start = end - latency)
``execute_tool {tool}``    tool call               tool_call_requested / tool_call_completed|failed
=========================  ======================  ==============================

Timestamps come from the events, and ids are derived from the task id (trace) and from
what a span stands for (span), so the same log always gives the same spans: exporting a
past run twice, or live and again later, sends identical spans.

``SpanProjector.take(event)`` folds one event and returns the spans it finished; spans are
only ever emitted finished. Message content (prompts, responses, tool arguments and
results) is left out unless ``content=True``, and then masked again with the project's
redaction, whatever the log kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from agentledger.redaction import redact
from agentledger.schemas import (
    Event,
    GoalSubmitted,
    LlmCallCompleted,
    LlmCallFailed,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    SubtaskSkipped,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
)

Attributes = dict[str, str | bool | int | float | list[str]]


def trace_id_of(task_id: str) -> int:
    """The 128-bit trace id of a task: the same task always gets the same trace."""
    value = int.from_bytes(hashlib.sha256(f"agentledger:trace:{task_id}".encode()).digest()[:16])
    return value or 1


def span_id_of(task_id: str, key: str) -> int:
    """The 64-bit span id of what ``key`` names within a task."""
    digest = hashlib.sha256(f"agentledger:span:{task_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8]) or 1


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished span, independent of any SDK."""

    task_id: str
    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start: datetime
    end: datetime
    kind: str  # INTERNAL | CLIENT
    attributes: Attributes
    error_type: str | None = None
    error_message: str | None = None


@dataclass
class _Open:
    key: str
    name: str
    start: datetime
    parent: int | None
    kind: str
    attributes: Attributes = field(default_factory=dict)


def _content(value: Any) -> str:
    masked = redact(value)
    return masked if isinstance(masked, str) else orjson.dumps(masked).decode()


class SpanProjector:
    """Folds events (of any number of tasks, each in seq order) into finished spans."""

    def __init__(self, *, content: bool = False) -> None:
        self.content = content
        self._open: dict[tuple[str, str], _Open] = {}  # (task, key) -> open span
        self._attempt: dict[tuple[str, str], str] = {}  # (task, subtask) -> its attempt's key
        self._totals: dict[str, list[float]] = {}  # task -> [input, output, cost]

    def take(self, event: Event) -> list[SpanRecord]:
        """Fold ``event``; return the spans it finished (parents after children)."""
        t, at = event.task_id, event.occurred_at
        match event:
            case GoalSubmitted():
                self._totals[t] = [0, 0, 0.0]
                attrs: Attributes = {
                    "gen_ai.operation.name": "invoke_workflow",
                    "agentledger.task_id": t,
                    "agentledger.workflow": event.workflow.name,
                }
                if self.content:
                    attrs["agentledger.goal"] = _content(event.goal)
                self._start(t, "task", f"invoke_workflow {event.workflow.name}", at, None, attrs)
                return []
            case SubtaskAssigned():
                done = self._close_attempt(t, event.subtask_id, at, "superseded", None)
                key = f"subtask:{event.subtask_id}:{event.attempt}"
                self._attempt[(t, event.subtask_id)] = key
                agent = event.agent or "?"
                self._start(
                    t,
                    key,
                    f"invoke_agent {agent}",
                    at,
                    self._id(t, "task"),
                    {
                        "gen_ai.operation.name": "invoke_agent",
                        "gen_ai.agent.name": agent,
                        "agentledger.subtask_id": event.subtask_id,
                        "agentledger.attempt": event.attempt,
                    },
                )
                return done
            case SubtaskCompleted() | SubtaskSkipped():
                return self._close_attempt(t, event.subtask_id, at, None, None)
            case SubtaskFailed():
                return self._close_attempt(t, event.subtask_id, at, event.error_kind, event.reason)
            case LlmCallCompleted() | LlmCallFailed():
                return [self._chat(event)]
            case ToolCallRequested():
                attrs = {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": event.tool,
                    "gen_ai.tool.call.id": event.call_id,
                    "gen_ai.tool.type": "function",
                    "agentledger.idempotency_key": event.idempotency_key,
                }
                if self.content:
                    attrs["gen_ai.tool.call.arguments"] = _content(event.arguments)
                self._start(
                    t,
                    f"tool:{event.call_id}",
                    f"execute_tool {event.tool}",
                    at,
                    self._parent(t, event.subtask_id),
                    attrs,
                )
                return []
            case ToolCallCompleted():
                extra: Attributes = {"agentledger.replayed": event.replayed}
                if self.content:
                    extra["gen_ai.tool.call.result"] = _content(event.result)
                return self._finish(t, f"tool:{event.call_id}", at, None, None, extra)
            case ToolCallFailed():
                return self._finish(t, f"tool:{event.call_id}", at, event.error_kind, event.message)
            case ToolCallRejected():
                key = f"tool:{event.call_id}"
                if (t, key) not in self._open:
                    self._start(
                        t,
                        key,
                        f"execute_tool {event.tool}",
                        at,
                        self._parent(t, event.subtask_id),
                        {
                            "gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.name": event.tool,
                            "gen_ai.tool.call.id": event.call_id,
                        },
                    )
                return self._finish(t, key, at, event.error_kind, event.reason)
            case TaskCompleted():
                return self._end_task(t, at, None, None)
            case TaskFailed():
                return self._end_task(t, at, event.error_kind, event.reason)
            case TaskCancelled():
                return self._end_task(t, at, "cancelled", event.reason)
        return []

    # -- helpers ----------------------------------------------------------------------------

    def _id(self, task_id: str, key: str) -> int:
        return span_id_of(task_id, key)

    def _parent(self, task_id: str, subtask_id: str) -> int:
        key = self._attempt.get((task_id, subtask_id))
        return self._id(task_id, key) if key else self._id(task_id, "task")

    def _start(
        self,
        task_id: str,
        key: str,
        name: str,
        at: datetime,
        parent: int | None,
        attributes: Attributes,
        kind: str = "INTERNAL",
    ) -> None:
        self._open[(task_id, key)] = _Open(key, name, at, parent, kind, attributes)

    def _finish(
        self,
        task_id: str,
        key: str,
        at: datetime,
        error_type: str | None,
        message: str | None,
        extra: Attributes | None = None,
    ) -> list[SpanRecord]:
        span = self._open.pop((task_id, key), None)
        if span is None:  # its start is not in what we read (e.g. --since cut it off)
            return []
        attributes = dict(span.attributes) | (extra or {})
        if error_type:
            attributes["error.type"] = error_type
        return [
            SpanRecord(
                task_id=task_id,
                name=span.name,
                trace_id=trace_id_of(task_id),
                span_id=self._id(task_id, key),
                parent_span_id=span.parent,
                start=span.start,
                end=max(at, span.start),
                kind=span.kind,
                attributes=attributes,
                error_type=error_type,
                error_message=str(redact(message)) if message and error_type else None,
            )
        ]

    def _close_attempt(
        self, task_id: str, subtask_id: str, at: datetime, error: str | None, message: str | None
    ) -> list[SpanRecord]:
        key = self._attempt.get((task_id, subtask_id))
        return self._finish(task_id, key, at, error, message) if key else []

    def _chat(self, e: LlmCallCompleted | LlmCallFailed) -> SpanRecord:
        t = e.task_id
        start = e.occurred_at - timedelta(milliseconds=e.latency_ms)
        attrs: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": e.provider,
            "gen_ai.request.model": e.model,
            "agentledger.subtask_id": e.subtask_id,
            "agentledger.iteration": e.iteration,
            "agentledger.latency_ms": e.latency_ms,
            "agentledger.attempts": e.attempts,
        }
        if e.agent:
            attrs["gen_ai.agent.name"] = e.agent
        error = message = None
        if isinstance(e, LlmCallCompleted):
            if e.fallback_from:
                attrs["gen_ai.request.model"] = e.fallback_from
            attrs |= {
                "gen_ai.response.model": e.model,
                "gen_ai.usage.input_tokens": e.usage.input_tokens,
                "gen_ai.usage.output_tokens": e.usage.output_tokens,
                "gen_ai.response.finish_reasons": [e.finish_reason or "stop"],
                "agentledger.cost_usd": e.cost_usd,
            }
            totals = self._totals.setdefault(t, [0, 0, 0.0])
            totals[0] += e.usage.input_tokens
            totals[1] += e.usage.output_tokens
            totals[2] += e.cost_usd
            if self.content:
                parts: list[dict[str, Any]] = []
                if e.content:
                    parts.append({"type": "text", "content": e.content})
                for call in e.tool_calls:
                    parts.append(
                        {
                            "type": "tool_call",
                            "id": call.call_id,
                            "name": call.tool,
                            "arguments": call.arguments,
                        }
                    )
                attrs["gen_ai.output.messages"] = _content(
                    [{"role": "assistant", "parts": parts, "finish_reason": e.finish_reason}]
                )
        else:
            error, message = e.error_kind, e.message
            attrs["error.type"] = e.error_kind
        return SpanRecord(
            task_id=t,
            name=f"chat {e.model}",
            trace_id=trace_id_of(t),
            span_id=self._id(t, f"llm:{e.event_id}"),
            parent_span_id=self._parent(t, e.subtask_id),
            start=start,
            end=e.occurred_at,
            kind="CLIENT",
            attributes=attrs,
            error_type=error,
            error_message=str(redact(message)) if message else None,
        )

    def _end_task(
        self, task_id: str, at: datetime, error: str | None, message: str | None
    ) -> list[SpanRecord]:
        out: list[SpanRecord] = []
        # whatever is still open in this task ended with it
        for t, key in [k for k in self._open if k[0] == task_id and k[1] != "task"]:
            out += self._finish(t, key, at, error or "unfinished", message)
        totals = self._totals.get(task_id, [0, 0, 0.0])
        out += self._finish(
            task_id,
            "task",
            at,
            error,
            message,
            {
                "gen_ai.usage.input_tokens": int(totals[0]),
                "gen_ai.usage.output_tokens": int(totals[1]),
                "agentledger.cost_usd": float(totals[2]),
            },
        )
        for k in [k for k in self._attempt if k[0] == task_id]:
            del self._attempt[k]
        self._totals.pop(task_id, None)
        return out


def spans_of(events: list[Event], *, content: bool = False) -> list[SpanRecord]:
    """Every finished span of these events."""
    projector = SpanProjector(content=content)
    return [span for event in events for span in projector.take(event)]
