"""Audit test fixtures: a realistic multi-run event stream built from the real event
classes, and the analytics figures computed from those events in plain Python — never from
the audit rows or SQL under test.

chdb hosts one engine directory per process, so every chdb test of the session shares one
directory and gets its own database in it.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentledger.audit.store import AuditStore
from agentledger.schemas import (
    AgentStepStarted,
    EventBase,
    GoalSubmitted,
    LimitReached,
    LlmCallCompleted,
    LlmCallFailed,
    Plan,
    PlannedSubtask,
    RecordedToolCall,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
    TokenUsage,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    ToolCallStarted,
    WorkflowRef,
)
from agentledger.streams.sqlite import SqliteEventLog

BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PRICES = {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6), "gpt-4.1-mini": (0.4, 1.6)}


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def audit_chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chdb directory this test process uses."""
    return tmp_path_factory.mktemp("audit") / "engine.chdb"


@pytest.fixture
def audit_database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def audit_url(audit_chdb_dir: Path, audit_database: str) -> str:
    return f"chdb://{audit_chdb_dir}?database={audit_database}"


@pytest.fixture
def audit_store(audit_url: str) -> Iterator[AuditStore]:
    store = AuditStore.connect(audit_url)
    store.init()
    try:
        yield store
    finally:
        store.drop()
        store.close()


@pytest.fixture
async def scenario_log(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    """A ledger holding ``scenario_events()``, appended in time order (tasks interleave)."""
    log = SqliteEventLog(tmp_path / "ledger.db", synchronous="NORMAL")
    for event in sorted(scenario_events(), key=lambda e: (e.occurred_at, e.task_id, e.seq)):
        await log.append([event])
    try:
        yield log
    finally:
        await log.close()


def write_ledger(path: Path) -> Figures:
    """A ledger file holding the scenario, for tests that hand it to another process."""

    async def write() -> None:
        log = SqliteEventLog(path, synchronous="NORMAL")
        try:
            for event in sorted(scenario_events(), key=lambda e: (e.occurred_at, e.task_id, e.seq)):
                await log.append([event])
        finally:
            await log.close()

    asyncio.run(write())
    return Figures(scenario_events())


# -- the scenario -------------------------------------------------------------------------


class Run:
    """Builds one task's events: seq, causation and time advance with every event."""

    def __init__(self, task_id: str, workflow: str, start: datetime, rng: random.Random) -> None:
        self.task_id, self.workflow, self.now, self.rng = task_id, workflow, start, rng
        self.events: list[EventBase] = []

    def add(self, cls: type[EventBase], gap_s: float = 1.0, **fields: Any) -> EventBase:
        self.now += timedelta(seconds=gap_s)
        cause = self.events[-1].event_id if self.events else None
        event = cls(
            task_id=self.task_id,
            seq=len(self.events) + 1,
            causation_id=cause,
            correlation_id=self.task_id,
            occurred_at=self.now,
            **fields,
        )
        self.events.append(event)
        return event

    def llm(self, agent: str, subtask: str, model: str, calls: Sequence[str] = ()) -> None:
        tin, tout = self.rng.randint(300, 3000), self.rng.randint(20, 800)
        cached = self.rng.choice([0, 0, 128, 256])
        pin, pout = PRICES[model]
        self.add(AgentStepStarted, agent=agent, subtask_id=subtask, iteration=1)
        self.add(
            LlmCallCompleted,
            gap_s=2.0,
            agent=agent,
            subtask_id=subtask,
            iteration=1,
            model=model,
            provider="openai",
            request_digest=f"d{self.rng.random()}",
            content=None if calls else "done; mail ann@example.com with +44 20 7946 0958",
            tool_calls=[RecordedToolCall(call_id=f"c{i}", tool=t) for i, t in enumerate(calls)],
            usage=TokenUsage(input_tokens=tin, output_tokens=tout, cached_tokens=cached),
            cost_usd=round((tin * pin + tout * pout) / 1e6, 9),
            latency_ms=round(self.rng.uniform(200, 4000), 1),
        )

    def tool(self, agent: str, subtask: str, tool: str, error: str | None = None) -> None:
        call = f"call-{len(self.events)}"
        key = f"{self.task_id}/{call}"
        common = {"agent": agent, "subtask_id": subtask, "call_id": call, "tool": tool}
        self.add(
            ToolCallRequested,
            **common,
            iteration=1,
            idempotency_key=key,
            arguments={"q": "kafka", "card": "4111 1111 1111 1111", "token": "abc-123-def"},
        )
        self.add(ToolCallStarted, **common, idempotency_key=key)
        latency = round(self.rng.uniform(5, 900), 1)
        if error is None:
            result = {"hits": ["note"], "from": "10.1.2.3"}
            self.add(
                ToolCallCompleted, **common, idempotency_key=key, result=result, latency_ms=latency
            )
        else:
            self.add(
                ToolCallFailed,
                **common,
                idempotency_key=key,
                error_kind=error,
                message=f"{tool} failed: {error}",
                latency_ms=latency,
            )


def _research_run(i: int, rng: random.Random) -> list[EventBase]:
    start = BASE + timedelta(days=i % 3, hours=i)
    run = Run(f"research-{i}", "research-brief", start, rng)
    run.add(
        GoalSubmitted,
        agent=None,
        goal=f"Brief {i}; reply to ann@example.com, card 4111 1111 1111 1111",
        workflow=WorkflowRef(name="research-brief"),
    )
    subtasks = [PlannedSubtask(id="r", agent="researcher"), PlannedSubtask(id="w", agent="writer")]
    run.llm("planner", "plan", "gpt-4o-mini")
    run.add(TaskPlanned, agent="planner", plan=Plan(subtasks=subtasks))
    gap = 60.0 if i == 5 else 1.0  # research-5 is the slow run
    run.add(SubtaskAssigned, gap_s=gap, agent="researcher", subtask_id="r", description="dig")
    searches = 12 if i == 6 else 2  # research-6 loops on its search tool
    run.llm("researcher", "r", "gpt-4o", calls=["search_notes"] * searches)
    for _ in range(searches):
        run.tool("researcher", "r", "search_notes")
    run.tool("researcher", "r", "fetch_page", error="timeout" if i in (3, 7) else None)
    run.llm("researcher", "r", "gpt-4o")
    run.add(SubtaskCompleted, gap_s=gap, agent="researcher", subtask_id="r", output={"ok": 1})
    run.add(SubtaskAssigned, gap_s=gap, agent="writer", subtask_id="w", description="write")
    if i == 7:  # the writer is rate limited, then stopped by its iteration cap
        run.add(
            LlmCallFailed,
            agent="writer",
            subtask_id="w",
            iteration=1,
            model="gpt-4.1-mini",
            provider="openai",
            error_kind="rate_limited",
            message="429",
            retryable=True,
            latency_ms=120.0,
        )
        run.add(
            LimitReached,
            agent="writer",
            limit="iterations",
            scope="agent",
            severity="stop",
            value=16,
            threshold=15,
            subtask_id="w",
        )
        run.add(SubtaskFailed, agent="writer", subtask_id="w", reason="cap", error_kind="limit")
        run.add(TaskFailed, agent="planner", reason="writer stopped", error_kind="limit")
    else:
        run.llm("writer", "w", "gpt-4.1-mini")
        run.add(SubtaskCompleted, gap_s=gap, agent="writer", subtask_id="w", output="brief")
        run.add(TaskCompleted, agent="planner", result="brief")
    return run.events


def _triage_run(i: int, rng: random.Random) -> list[EventBase]:
    # All triage runs fall in one hour of day 2, where the customer lookup keeps failing.
    start = BASE + timedelta(days=2, hours=2, minutes=10 * i)
    run = Run(f"triage-{i}", "support-triage", start, rng)
    run.add(
        GoalSubmitted,
        goal="Customer bob@example.org from 192.168.7.7 is angry",
        workflow=WorkflowRef(name="support-triage"),
    )
    run.llm("triager", "t", "gpt-4o-mini", calls=["lookup_customer"])
    run.tool("triager", "t", "lookup_customer", error="unavailable")
    run.tool("triager", "t", "lookup_customer", error="unavailable" if i % 2 else None)
    run.add(
        ToolCallRejected,
        agent="triager",
        subtask_id="t",
        iteration=1,
        call_id="x",
        tool="send_reply",
        reason="not in the triager's allow-list",
        error_kind="not_allowed",
    )
    run.llm("responder", "t", "gpt-4o-mini")
    run.add(TaskCompleted, agent="responder", result="answered")
    return run.events


def scenario_events() -> list[EventBase]:
    """13 runs over 3 days in 2 workflows, with a slow run, a tool loop, failed tools, a
    rate-limited and capped writer, a failed task, and a burst of failures in one hour."""
    rng = random.Random(20260302)
    events: list[EventBase] = []
    for i in range(8):
        events += _research_run(i, rng)
    for i in range(5):
        events += _triage_run(i, rng)
    return events


# -- independent figures ------------------------------------------------------------------

_OK = {"llm_call_completed", "tool_call_completed", "subtask_completed", "task_completed"}
_FAILED = {
    "llm_call_failed",
    "tool_call_failed",
    "tool_call_rejected",
    "subtask_failed",
    "output_rejected",
    "plan_rejected",
    "task_failed",
}
_LLM = {"llm_call_completed", "llm_call_failed"}
_TOOL = {"tool_call_completed", "tool_call_failed"}


def _kind(event: EventBase) -> str:
    return str(type(event).model_fields["type"].default)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, Excel PERCENTILE.INC)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Figures:
    """What every analytics command should report for ``events``, computed in Python."""

    events: Sequence[EventBase]
    workflows: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for e in self.events:
            if isinstance(e, GoalSubmitted):
                self.workflows[e.task_id] = e.workflow.name

    def _in(self, e: EventBase, since: datetime | None, until: datetime | None) -> bool:
        return (since is None or e.occurred_at >= since) and (
            until is None or e.occurred_at < until
        )

    def cost(
        self, by: str, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, tuple[int, int, int, int, float]]:
        out: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
        for e in self.events:
            if isinstance(e, LlmCallCompleted) and self._in(e, since, until):
                key = {
                    "task": e.task_id,
                    "agent": e.agent or "",
                    "model": e.model,
                    "workflow": self.workflows.get(e.task_id, ""),
                    "day": e.occurred_at.date().isoformat(),
                }[by]
                acc = out[key]
                acc[0] += 1
                acc[1] += e.usage.input_tokens
                acc[2] += e.usage.output_tokens
                acc[3] += e.usage.cached_tokens
                acc[4] += e.cost_usd
        return {k: (int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4]) for k, a in out.items()}

    def failures(self, by: str) -> dict[str, tuple[int, int]]:
        """key -> (outcomes, failures); for "error" outcomes is the total."""
        outcomes: dict[str, int] = defaultdict(int)
        failed: dict[str, int] = defaultdict(int)
        total = 0
        for e in self.events:
            kind = _kind(e)
            if kind not in _OK and kind not in _FAILED:
                continue
            total += 1
            if by == "error":
                if kind in _FAILED:
                    err = getattr(e, "error_kind", None) or kind
                    failed[err] += 1
                continue
            key = e.agent or "" if by == "agent" else getattr(e, "tool", "")
            if not key and by == "tool":
                continue
            outcomes[key] += 1
            failed[key] += kind in _FAILED
        if by == "error":
            return {k: (total, n) for k, n in failed.items()}
        return {k: (outcomes[k], failed[k]) for k in outcomes}

    def latency(self, by: str) -> dict[str, tuple[int, float, float, float, float]]:
        types = {"model": _LLM, "tool": _TOOL, "agent": _LLM | _TOOL}[by]
        values: dict[str, list[float]] = defaultdict(list)
        for e in self.events:
            if _kind(e) in types:
                latency_ms: float = e.latency_ms  # type: ignore[attr-defined]
                values[str(getattr(e, by) or "")].append(latency_ms)
        return {
            k: (len(v), quantile(v, 0.5), quantile(v, 0.95), quantile(v, 0.99), max(v))
            for k, v in values.items()
        }

    def tool_bursts(
        self, factor: float = 3.0, min_calls: int = 5, min_runs: int = 3
    ) -> set[tuple[str, str]]:
        calls: dict[tuple[str, str], int] = defaultdict(int)
        for e in self.events:
            if isinstance(e, ToolCallRequested):
                calls[(e.task_id, e.tool)] += 1
        per_workflow: dict[tuple[str, str], list[int]] = defaultdict(list)
        for (task, tool), n in calls.items():
            per_workflow[(self.workflows[task], tool)].append(n)
        out = set()
        for (task, tool), n in calls.items():
            runs = per_workflow[(self.workflows[task], tool)]
            if len(runs) >= min_runs and n >= min_calls and n > factor * statistics.median(runs):
                out.add((task, tool))
        return out

    def slow_runs(self, factor: float = 3.0, min_runs: int = 3) -> set[str]:
        spans: dict[str, list[datetime]] = defaultdict(list)
        for e in self.events:
            spans[e.task_id].append(e.occurred_at)
        seconds = {t: (max(v) - min(v)).total_seconds() for t, v in spans.items()}
        by_wf: dict[str, list[float]] = defaultdict(list)
        for task, s in seconds.items():
            by_wf[self.workflows[task]].append(s)
        return {
            t
            for t, s in seconds.items()
            if len(by_wf[self.workflows[t]]) >= min_runs
            and s > factor * statistics.median(by_wf[self.workflows[t]])
        }

    def error_windows(
        self, rate: float = 0.25, minutes: int = 60, min_outcomes: int = 5
    ) -> set[tuple[datetime, str]]:
        outcomes: dict[tuple[datetime, str], int] = defaultdict(int)
        failed: dict[tuple[datetime, str], int] = defaultdict(int)
        for e in self.events:
            if _kind(e) in _OK or _kind(e) in _FAILED:
                ts = int(e.occurred_at.timestamp()) // (minutes * 60) * minutes * 60
                key = (datetime.fromtimestamp(ts, UTC), e.agent or "")
                outcomes[key] += 1
                failed[key] += _kind(e) in _FAILED
        return {k for k, n in outcomes.items() if n >= min_outcomes and failed[k] / n > rate}


# -- comparison ---------------------------------------------------------------------------


def check_figures(store: AuditStore, figures: Figures) -> None:
    """Assert every analytics command of ``store`` against ``figures``."""
    from agentledger.audit import analytics

    for by in ("task", "agent", "model", "workflow", "day"):
        got = {
            r.key: (r.calls, r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_usd)
            for r in analytics.cost(store, by)  # type: ignore[arg-type]
        }
        want = figures.cost(by)
        assert got.keys() == want.keys(), by
        for key, row in want.items():
            assert got[key][:4] == row[:4], (by, key)
            assert got[key][4] == pytest.approx(row[4], rel=1e-9, abs=1e-12), (by, key)
    for by in ("agent", "tool", "error"):
        rows = analytics.failures(store, by)  # type: ignore[arg-type]
        assert {r.key: (r.outcomes, r.failures) for r in rows} == figures.failures(by), by
        for r in rows:
            assert r.failure_rate == pytest.approx(r.failures / r.outcomes)
    for by in ("agent", "model", "tool"):
        got_lat = {
            r.key: (r.calls, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms)
            for r in analytics.latency(store, [by])  # type: ignore[list-item]
        }
        want_lat = figures.latency(by)
        assert got_lat.keys() == want_lat.keys(), by
        for key, lat in want_lat.items():
            assert got_lat[key] == pytest.approx(lat, rel=1e-9), (by, key)
    found = analytics.anomalies(store)
    assert {(a.task_id, a.subject) for a in found if a.kind == "tool_frequency"} == (
        figures.tool_bursts()
    )
    assert {a.task_id for a in found if a.kind == "slow_run"} == figures.slow_runs()
    assert {(a.window_start, a.subject) for a in found if a.kind == "error_rate"} == (
        figures.error_windows()
    )


def snapshot(store: AuditStore) -> list[Any]:
    """Every analytics figure of ``store``, for before/after comparisons."""
    from agentledger.audit import analytics

    out: list[Any] = []
    for by in ("task", "agent", "model", "workflow", "day"):
        out.append(analytics.cost(store, by))  # type: ignore[arg-type]
    for by in ("agent", "tool", "error"):
        out.append(analytics.failures(store, by))  # type: ignore[arg-type]
    out.append(analytics.latency(store))
    out.append(analytics.anomalies(store))
    return out
