"""Diff: two runs side by side — outputs, cost, tokens, latency and events.

``RunFigures.of(events)`` sums one task's run (from its events, like every projection);
``diff_runs(a, b)`` compares two. A fork against its parent, a candidate against the
baseline, yesterday's task against today's: any two tasks.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

from agentledger.evaluation.compare import differences
from agentledger.projections.task_state import fold
from agentledger.schemas import ContextSummarized, Event, LlmCallCompleted, ToolCallCompleted


@dataclass(frozen=True)
class RunFigures:
    """What one run produced and what it took."""

    task_id: str
    status: str
    result: JsonValue
    outputs: dict[str, JsonValue]  # by subtask
    input_tokens: int
    output_tokens: int
    cost_usd: float
    llm_calls: int
    tool_calls: int
    llm_latency_ms: float  # time spent waiting for models
    tool_latency_ms: float
    wall_ms: float  # first event to last
    events: int
    labels: list[str] = field(default_factory=list)  # one line per event, for the event diff

    @classmethod
    def of(cls, events: Sequence[Event]) -> RunFigures:
        ordered = sorted(events, key=lambda e: e.seq)
        if not ordered:
            raise ValueError("a run needs at least one event")
        state = fold(ordered[0].task_id, ordered)
        llm = sum(e.latency_ms for e in ordered if isinstance(e, LlmCallCompleted))
        llm += sum(e.latency_ms for e in ordered if isinstance(e, ContextSummarized))
        tools = sum(e.latency_ms for e in ordered if isinstance(e, ToolCallCompleted))
        wall = (ordered[-1].occurred_at - ordered[0].occurred_at).total_seconds() * 1000
        return cls(
            task_id=state.task_id,
            status=state.status,
            result=state.result,
            outputs={s.id: s.output for s in state.subtasks.values() if s.status == "completed"},
            input_tokens=state.tokens_in,
            output_tokens=state.tokens_out,
            cost_usd=state.cost_usd,
            llm_calls=state.llm_calls,
            tool_calls=state.tool_calls,
            llm_latency_ms=llm,
            tool_latency_ms=tools,
            wall_ms=wall,
            events=len(ordered),
            labels=[label(e) for e in ordered],
        )


def label(e: Event) -> str:
    """An event in a few words: type, agent, subtask, tool."""
    parts: list[str] = [e.type]
    for name in ("agent", "subtask_id", "tool"):
        value = getattr(e, name, None)
        if value:
            parts.append(f"{name.removesuffix('_id')}={value}")
    return " ".join(parts)


_FIGURES: tuple[tuple[str, str], ...] = (
    ("cost_usd", "cost (USD)"),
    ("input_tokens", "input tokens"),
    ("output_tokens", "output tokens"),
    ("llm_calls", "LLM calls"),
    ("tool_calls", "tool calls"),
    ("llm_latency_ms", "LLM latency (ms)"),
    ("tool_latency_ms", "tool latency (ms)"),
    ("wall_ms", "wall time (ms)"),
    ("events", "events"),
)


@dataclass(frozen=True)
class RunDiff:
    a: RunFigures
    b: RunFigures

    @property
    def same_outputs(self) -> bool:
        return self.a.result == self.b.result and self.a.outputs == self.b.outputs

    def figures(self) -> list[tuple[str, float, float]]:
        return [(title, getattr(self.a, k), getattr(self.b, k)) for k, title in _FIGURES]

    def as_json(self) -> dict[str, Any]:
        return {
            "a": self.a.task_id,
            "b": self.b.task_id,
            "status": [self.a.status, self.b.status],
            "same_outputs": self.same_outputs,
            "result": [self.a.result, self.b.result],
            "outputs": {
                d.path: [d.recorded, d.replayed]
                for d in differences(self.a.outputs, self.b.outputs)
            },
            "figures": {k: [getattr(self.a, k), getattr(self.b, k)] for k, _ in _FIGURES},
            "event_types": _type_deltas(self.a.labels, self.b.labels),
        }

    def render(self, *, max_event_lines: int = 40) -> str:
        a, b = self.a, self.b
        lines = [f"A {a.task_id} ({a.status})", f"B {b.task_id} ({b.status})", ""]
        if self.same_outputs:
            lines.append("outputs: the same")
        else:
            lines.append("outputs:")
            if a.result != b.result:
                lines.append(f"  result: A {_short(a.result)}")
                lines.append(f"          B {_short(b.result)}")
            for d in differences(a.outputs, b.outputs):
                lines.append(f"  {d.path}: A {_short(d.recorded)}  B {_short(d.replayed)}")
        lines.append("")
        lines.append(f"{'':<20}{'A':>14}{'B':>14}{'B - A':>14}")
        for title, x, y in self.figures():
            lines.append(f"{title:<20}{_num(x):>14}{_num(y):>14}{_num(y - x, signed=True):>14}")
        diff = list(difflib.unified_diff(a.labels, b.labels, "A", "B", n=1, lineterm=""))
        lines.append("")
        if not diff:
            lines.append("events: the same sequence")
        else:
            lines.append("events (unified diff of the sequences):")
            lines += [f"  {d}" for d in diff[2 : 2 + max_event_lines]]
            if len(diff) - 2 > max_event_lines:
                lines.append(f"  … {len(diff) - 2 - max_event_lines} more lines")
        return "\n".join(lines)


def diff_runs(a: Sequence[Event], b: Sequence[Event]) -> RunDiff:
    return RunDiff(RunFigures.of(a), RunFigures.of(b))


def _type_deltas(a: list[str], b: list[str]) -> dict[str, list[int]]:
    ca = Counter(x.split(" ", 1)[0] for x in a)
    cb = Counter(x.split(" ", 1)[0] for x in b)
    return {t: [ca[t], cb[t]] for t in sorted(ca | cb) if ca[t] != cb[t]}


def _num(x: float, *, signed: bool = False) -> str:
    text = f"{x:+.6g}" if signed else f"{x:.6g}"
    return text


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
