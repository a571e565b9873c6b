"""Audit benchmark: ingest rate and the time of every analytics query.

    python benchmarks/bench_audit.py                 # 1,000,000 events, embedded engine
    python benchmarks/bench_audit.py --events 100000
    python benchmarks/bench_audit.py --clickhouse http://default:@localhost:8123

Events are synthetic but built like real runs, from the real event classes: a goal, a
plan, per subtask an assignment, agent steps with LLM calls (tokens, cost, latency), tool
calls with some failures, and the task's end; over 30 days, 3 workflows, 6 agents, 4 models
and 5 tools. They become rows through ``agentledger.audit.rows`` (masking included), so
"map" is the per-event cost of the projection and "insert" the ClickHouse side. 10% of the
events are then delivered a second time, as after a Kafka rebalance, so the queries pay
for their deduplication (``FINAL``) as they would in production.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from agentledger.audit import analytics
from agentledger.audit.rows import to_row
from agentledger.audit.store import AuditStore
from agentledger.schemas import (
    AgentStepStarted,
    EventBase,
    GoalSubmitted,
    LlmCallCompleted,
    LlmCallFailed,
    Plan,
    PlannedSubtask,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
    TokenUsage,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    WorkflowRef,
)

START = datetime(2026, 1, 1, tzinfo=UTC)
WORKFLOWS = {
    "research-brief": ["researcher", "writer", "reviewer"],
    "support-triage": ["triager", "responder"],
    "code-review": ["reviewer", "fixer"],
}
MODELS = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "o4-mini": (1.1, 4.4),
}
TOOLS = ["search_notes", "fetch_page", "lookup_customer", "run_tests", "save_brief"]
TEXT = "Summary of the findings so far; the notes mention retries, budgets and ordering. " * 3


def run_events(n: int, rng: random.Random) -> list[EventBase]:
    """One task's events, about 25 of them."""
    workflow = rng.choice(list(WORKFLOWS))
    agents = WORKFLOWS[workflow]
    task = f"task-{n:08d}"
    now = START + timedelta(seconds=rng.uniform(0, 30 * 86400))
    events: list[EventBase] = []

    def add(cls: type[EventBase], **fields: Any) -> None:
        nonlocal now
        now += timedelta(seconds=rng.expovariate(1 / 3))
        events.append(cls(task_id=task, seq=len(events) + 1, occurred_at=now, **fields))

    add(GoalSubmitted, goal=f"goal {n} for ops@example.com", workflow=WorkflowRef(name=workflow))
    plan = [PlannedSubtask(id=f"s{i}", agent=a) for i, a in enumerate(agents)]
    add(TaskPlanned, agent="planner", plan=Plan(subtasks=plan))
    failed = False
    for sub in plan:
        add(SubtaskAssigned, agent=sub.agent, subtask_id=sub.id, description="do it")
        for iteration in (1, 2):
            add(AgentStepStarted, agent=sub.agent, subtask_id=sub.id, iteration=iteration)
            model = rng.choice(list(MODELS))
            common = {"agent": sub.agent, "subtask_id": sub.id, "iteration": iteration}
            if rng.random() < 0.02:
                add(
                    LlmCallFailed,
                    **common,
                    model=model,
                    provider="openai",
                    error_kind="rate_limited",
                    message="429",
                    retryable=True,
                    latency_ms=rng.uniform(50, 300),
                )
                continue
            tin, tout = rng.randint(200, 4000), rng.randint(10, 900)
            pin, pout = MODELS[model]
            add(
                LlmCallCompleted,
                **common,
                model=model,
                provider="openai",
                request_digest="d",
                content=TEXT,
                usage=TokenUsage(input_tokens=tin, output_tokens=tout),
                cost_usd=(tin * pin + tout * pout) / 1e6,
                latency_ms=rng.lognormvariate(6.5, 0.6),
            )
            if iteration == 1:
                tool = rng.choice(TOOLS)
                call = {
                    "agent": sub.agent,
                    "subtask_id": sub.id,
                    "call_id": "c",
                    "tool": tool,
                    "idempotency_key": f"{task}/{sub.id}",
                }
                add(ToolCallRequested, **call, iteration=1, arguments={"q": "kafka ordering"})
                latency = rng.lognormvariate(4.5, 1.0)
                if rng.random() < 0.05:
                    add(
                        ToolCallFailed,
                        **call,
                        error_kind="timeout",
                        message="slow",
                        latency_ms=latency,
                    )
                else:
                    add(ToolCallCompleted, **call, result={"hits": ["a", "b"]}, latency_ms=latency)
        if rng.random() < 0.03:
            add(
                SubtaskFailed,
                agent=sub.agent,
                subtask_id=sub.id,
                reason="gave up",
                error_kind="limit",
            )
            failed = True
            break
        add(SubtaskCompleted, agent=sub.agent, subtask_id=sub.id, output={"ok": True})
    if failed:
        add(TaskFailed, agent="planner", reason="a subtask failed", error_kind="subtask_failed")
    else:
        add(TaskCompleted, agent="planner", result="done")
    return events


def event_batches(total: int, batch: int) -> Iterator[list[EventBase]]:
    rng = random.Random(7)
    pending: list[EventBase] = []
    produced, n = 0, 0
    while produced < total:
        events = run_events(n, rng)[: total - produced]
        n += 1
        produced += len(events)
        pending += events
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per insert")
    parser.add_argument("--repeat", type=int, default=3, help="runs per query (median shown)")
    parser.add_argument("--clickhouse", help="a server URL (default: a temporary chdb directory)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="bench-audit-")
    url = args.clickhouse or f"chdb://{tmp.name}/audit.chdb"
    store = AuditStore.connect(url, database="bench_audit")
    store.drop()
    store.init()

    gen = mapping = inserting = 0.0
    rows_written = 0
    redelivered: list[Any] = []
    workflows: dict[str, str] = {}
    clock = time.perf_counter()
    for events in event_batches(args.events, args.batch):
        now = time.perf_counter()
        gen += now - clock
        for e in events:
            if isinstance(e, GoalSubmitted):
                workflows[e.task_id] = e.workflow.name
        values = [to_row(e, workflow=workflows.get(e.task_id, "")).values() for e in events]
        mapped = time.perf_counter()
        mapping += mapped - now
        rows_written += store.insert_values(values)
        clock = time.perf_counter()
        inserting += clock - mapped
        redelivered += values[: len(values) // 10]
    started = time.perf_counter()
    for i in range(0, len(redelivered), args.batch):
        rows_written += store.insert_values(redelivered[i : i + args.batch])
    inserting += time.perf_counter() - started
    events_total = args.events

    print(f"audit benchmark: {events_total:,} events, store {store.location}")
    print(f"  generate events        {gen:8.1f} s   {events_total / gen:12,.0f} events/s")
    print(f"  map to rows (masking)  {mapping:8.1f} s   {events_total / mapping:12,.0f} rows/s")
    print(
        f"  insert into ClickHouse {inserting:8.1f} s   {rows_written / inserting:12,.0f} rows/s"
        f"   ({rows_written:,} rows incl. {len(redelivered):,} re-delivered)"
    )
    print(
        f"  end to end (map+insert)            {rows_written / (mapping + inserting):12,.0f} rows/s"
    )

    unique = store.query("SELECT count() FROM audit_events").rows[0][0]
    assert unique == events_total, f"{unique} unique events in the table, expected {events_total}"
    queries: list[tuple[str, Callable[[], Any]]] = []
    for by in ("task", "agent", "model", "workflow", "day"):
        queries.append((f"cost --by {by}", lambda by=by: analytics.cost(store, by)))
    for by in ("agent", "tool", "error"):
        queries.append((f"failures --by {by}", lambda by=by: analytics.failures(store, by)))
    queries.append(("latency (agent, model, tool)", lambda: analytics.latency(store)))
    queries.append(("anomalies", lambda: analytics.anomalies(store)))
    week = (START + timedelta(days=7), START + timedelta(days=14))
    queries.append(
        (
            "cost --by day, one week",
            lambda: analytics.cost(store, "day", since=week[0], until=week[1]),
        )
    )
    print(f"  analytics over {unique:,} events (median of {args.repeat}):")
    for name, query in queries:
        seconds, rows = timed(query, args.repeat)
        print(f"    {name:30s} {seconds * 1000:9.1f} ms   {len(rows):8,} rows")
    store.drop()
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
