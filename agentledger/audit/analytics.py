"""The analytics queries over the audit table, returning typed rows.

Every query reads ``audit_events`` (one row per event however often it was delivered) and
takes an optional time range: ``since`` inclusive, ``until`` exclusive, both UTC.

* ``cost(store, by=...)`` — LLM spend and tokens per task, agent, model, workflow or day,
  with the calls that had no known price (``unpriced_calls``: their cost is missing from
  ``cost_usd``) and those whose tokens were counted locally (``estimated_calls``).
* ``failures(store, by=...)`` — failure counts and rates per agent, tool or error kind.
  An *outcome* is an event that ends a call or a piece of work (LLM call, LLM attempt, tool
  call, subtask, task, plan/output review); a *failure* is an outcome with status error or
  rejected, so a 429 that a retry recovered from counts (as ``llm_attempt_failed``). The
  rate is failures / outcomes.
* ``latency(store)`` — p50/p95/p99 of call latency per agent, model and tool (exact
  quantiles, linear interpolation between ranks).
* ``anomalies(store)`` — runs that call a tool far more often than the workflow's other
  runs, runs far slower than their workflow's median, and windows where an agent's failure
  rate is above a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from agentledger.audit.rows import FAILURE_STATUSES, OUTCOME_STATUSES
from agentledger.audit.store import AuditStore, Table

__all__ = [
    "AnomalyRow",
    "AnomalyThresholds",
    "CostDimension",
    "CostRow",
    "FailureDimension",
    "FailureRow",
    "LatencyDimension",
    "LatencyRow",
    "anomalies",
    "cost",
    "failures",
    "latency",
    "run_sql",
    "to_table",
]

CostDimension = Literal["task", "agent", "model", "workflow", "day"]
FailureDimension = Literal["agent", "tool", "error"]
LatencyDimension = Literal["agent", "model", "tool"]

_COST_KEYS: dict[str, str] = {
    "task": "task_id",
    "agent": "agent",
    "model": "model",
    "workflow": "workflow",
    "day": "toString(toDate(occurred_at))",
}
_LLM_CALLS = "('llm_call_completed', 'llm_call_failed')"
_TOOL_CALLS = "('tool_call_completed', 'tool_call_failed')"
_LATENCY_TYPES: dict[str, str] = {
    "model": _LLM_CALLS,
    "tool": _TOOL_CALLS,
    "agent": "('llm_call_completed', 'llm_call_failed', 'tool_call_completed', 'tool_call_failed')",
}
_OUTCOMES = "(" + ", ".join(f"'{s}'" for s in OUTCOME_STATUSES) + ")"
_FAILURES = "(" + ", ".join(f"'{s}'" for s in FAILURE_STATUSES) + ")"


@dataclass(frozen=True, slots=True)
class CostRow:
    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    unpriced_calls: int = 0  # calls whose model had no known price: their cost is not in cost_usd
    estimated_calls: int = 0  # calls whose server sent no usage: tokens counted locally


@dataclass(frozen=True, slots=True)
class FailureRow:
    key: str
    outcomes: int
    failures: int
    failure_rate: float
    detail: str = ""  # for --by error: the event types the error kind appeared in


@dataclass(frozen=True, slots=True)
class LatencyRow:
    dimension: str
    key: str
    calls: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    kind: str  # tool_frequency | slow_run | error_rate
    task_id: str  # "" for error_rate
    workflow: str
    subject: str  # the tool, "" for a slow run, the agent for error_rate
    value: float  # calls, seconds, or failure rate
    baseline: float  # median calls, median seconds, or the rate threshold
    window_start: datetime | None
    detail: str


@dataclass(frozen=True, slots=True)
class AnomalyThresholds:
    """What counts as abnormal. Defaults follow the issue: 3x the baseline."""

    tool_factor: float = 3.0
    tool_min_calls: int = 5  # fewer calls than this are never flagged
    slow_factor: float = 3.0
    min_runs: int = 3  # a workflow needs this many runs for its medians to mean anything
    error_rate: float = 0.25
    error_window_minutes: int = 60
    error_min_outcomes: int = 5


def _where(since: datetime | None, until: datetime | None) -> tuple[str, dict[str, Any]]:
    clauses = ["1"]
    params: dict[str, Any] = {}
    if since is not None:
        clauses.append("occurred_at >= {since:DateTime64(6, 'UTC')}")
        params["since"] = since
    if until is not None:
        clauses.append("occurred_at < {until:DateTime64(6, 'UTC')}")
        params["until"] = until
    return " AND ".join(clauses), params


def cost(
    store: AuditStore,
    by: CostDimension = "task",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[CostRow]:
    """LLM calls, tokens and cost per ``by``; most expensive first (``day``: by date)."""
    key = _COST_KEYS[by]
    where, params = _where(since, until)
    order = "key" if by == "day" else "cost_usd DESC, key"
    table = store.query(
        f"SELECT {key} AS key, count() AS calls, sum(input_tokens), sum(output_tokens), "
        f"sum(cached_tokens), sum(cost_usd) AS cost_usd, "
        "countIf(JSONExtractBool(payload, 'unpriced')), "
        "countIf(JSONExtractString(payload, 'usage_source') = 'estimated') "
        f"FROM {store.database}.audit_events "
        f"WHERE type = 'llm_call_completed' AND {where} GROUP BY key ORDER BY {order}",
        params,
    )
    return [
        CostRow(str(k), int(c), int(i), int(o), int(ca), float(u), int(n), int(e))
        for k, c, i, o, ca, u, n, e in table.rows
    ]


def failures(
    store: AuditStore,
    by: FailureDimension = "agent",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[FailureRow]:
    """Outcomes, failures and failure rate per agent, tool or error kind; most failures first.

    For ``by="error"`` the outcomes column is the total in the range, so the rate is the
    share of all outcomes that failed with that error kind.
    """
    where, params = _where(since, until)
    db = store.database
    if by == "error":
        total = store.query(
            f"SELECT countIf(status IN {_OUTCOMES}) FROM {db}.audit_events WHERE {where}", params
        ).rows[0][0]
        table = store.query(
            f"SELECT error_kind AS key, count() AS failures, "
            f"arrayStringConcat(arraySort(groupUniqArray(type)), ',') "
            f"FROM {db}.audit_events WHERE status IN {_FAILURES} AND {where} "
            "GROUP BY key ORDER BY failures DESC, key",
            params,
        )
        return [
            FailureRow(str(k), int(total), int(n), n / total if total else 0.0, str(types))
            for k, n, types in table.rows
        ]
    key = "agent" if by == "agent" else "tool"
    extra = "" if by == "agent" else "AND tool != ''"
    table = store.query(
        f"SELECT {key} AS key, countIf(status IN {_OUTCOMES}) AS outcomes, "
        f"countIf(status IN {_FAILURES}) AS failures FROM {db}.audit_events "
        f"WHERE {where} {extra} GROUP BY key HAVING outcomes > 0 "
        "ORDER BY failures DESC, key",
        params,
    )
    return [FailureRow(str(k), int(o), int(f), f / o) for k, o, f in table.rows]


def latency(
    store: AuditStore,
    by: Sequence[LatencyDimension] = ("agent", "model", "tool"),
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[LatencyRow]:
    """Latency quantiles of LLM and tool calls (failed calls included) per dimension."""
    where, params = _where(since, until)
    out: list[LatencyRow] = []
    for dimension in by:
        table = store.query(
            f"SELECT {dimension} AS key, count() AS calls, "
            "quantilesExactInclusive(0.5, 0.95, 0.99)(latency_ms), max(latency_ms) "
            f"FROM {store.database}.audit_events "
            f"WHERE type IN {_LATENCY_TYPES[dimension]} AND {where} "
            "GROUP BY key ORDER BY key",
            params,
        )
        for key, calls, (p50, p95, p99), top in table.rows:
            out.append(LatencyRow(dimension, str(key), int(calls), p50, p95, p99, float(top)))
    return out


def anomalies(
    store: AuditStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: AnomalyThresholds | None = None,
) -> list[AnomalyRow]:
    """Tool-call bursts, slow runs and failure-rate spikes, in that order."""
    t = thresholds or AnomalyThresholds()
    return (
        _tool_bursts(store, t, since, until)
        + _slow_runs(store, t, since, until)
        + _error_windows(store, t, since, until)
    )


def _tool_bursts(
    store: AuditStore, t: AnomalyThresholds, since: datetime | None, until: datetime | None
) -> list[AnomalyRow]:
    where, params = _where(since, until)
    # The baseline is the median calls per run among the workflow's runs that used the tool.
    table = store.query(
        f"""
        WITH per_run AS (
            SELECT task_id, max(workflow) AS workflow, tool, count() AS calls
            FROM {store.database}.audit_events
            WHERE type = 'tool_call_requested' AND {where}
            GROUP BY task_id, tool
        ),
        baseline AS (
            SELECT workflow, tool, quantileExactInclusive(0.5)(calls) AS median, count() AS runs
            FROM per_run GROUP BY workflow, tool
        )
        SELECT r.task_id, r.workflow, r.tool, r.calls, b.median
        FROM per_run AS r INNER JOIN baseline AS b ON r.workflow = b.workflow AND r.tool = b.tool
        WHERE b.runs >= {{min_runs:UInt32}} AND r.calls >= {{min_calls:UInt32}}
          AND r.calls > {{factor:Float64}} * b.median
        ORDER BY r.calls DESC, r.task_id, r.tool
        """,
        {**params, "min_runs": t.min_runs, "min_calls": t.tool_min_calls, "factor": t.tool_factor},
    )
    return [
        AnomalyRow(
            "tool_frequency",
            str(task),
            str(workflow),
            str(tool),
            float(calls),
            float(median),
            None,
            f"{calls} calls to {tool}; the workflow's runs make {median:g} (median)",
        )
        for task, workflow, tool, calls, median in table.rows
    ]


def _slow_runs(
    store: AuditStore, t: AnomalyThresholds, since: datetime | None, until: datetime | None
) -> list[AnomalyRow]:
    where, params = _where(since, until)
    # A run's duration spans its first to its last event; runs are those *started* in the
    # range, measured in full, so a range boundary never cuts a run short.
    where = where.replace("occurred_at", "started")
    table = store.query(
        f"""
        WITH runs AS (
            SELECT task_id, max(workflow) AS workflow, min(occurred_at) AS started,
                   (toUnixTimestamp64Micro(max(occurred_at))
                    - toUnixTimestamp64Micro(min(occurred_at))) / 1e6 AS seconds
            FROM {store.database}.audit_events
            WHERE type != 'corrupt_record'
            GROUP BY task_id
            HAVING {where}
        ),
        medians AS (
            SELECT workflow, quantileExactInclusive(0.5)(seconds) AS median, count() AS runs
            FROM runs GROUP BY workflow
        )
        SELECT r.task_id, r.workflow, r.seconds, m.median
        FROM runs AS r INNER JOIN medians AS m ON r.workflow = m.workflow
        WHERE m.runs >= {{min_runs:UInt32}} AND r.seconds > {{factor:Float64}} * m.median
        ORDER BY r.seconds DESC, r.task_id
        """,
        {**params, "min_runs": t.min_runs, "factor": t.slow_factor},
    )
    return [
        AnomalyRow(
            "slow_run",
            str(task),
            str(workflow),
            "",
            float(seconds),
            float(median),
            None,
            f"ran {seconds:.1f}s; the workflow's median run takes {median:.1f}s",
        )
        for task, workflow, seconds, median in table.rows
    ]


def _error_windows(
    store: AuditStore, t: AnomalyThresholds, since: datetime | None, until: datetime | None
) -> list[AnomalyRow]:
    where, params = _where(since, until)
    table = store.query(
        f"""
        SELECT toStartOfInterval(occurred_at, toIntervalMinute({{minutes:UInt32}})) AS win_start,
               agent, countIf(status IN {_OUTCOMES}) AS outcomes,
               countIf(status IN {_FAILURES}) AS failed
        FROM {store.database}.audit_events
        WHERE {where}
        GROUP BY win_start, agent
        HAVING outcomes >= {{min_outcomes:UInt32}} AND failed / outcomes > {{rate:Float64}}
        ORDER BY win_start, agent
        """,
        {
            **params,
            "minutes": t.error_window_minutes,
            "min_outcomes": t.error_min_outcomes,
            "rate": t.error_rate,
        },
    )
    return [
        AnomalyRow(
            "error_rate",
            "",
            "",
            str(agent),
            failed / outcomes,
            t.error_rate,
            window,
            f"{failed} of {outcomes} outcomes failed in the {t.error_window_minutes} min "
            f"from {window:%Y-%m-%d %H:%M}Z",
        )
        for window, agent, outcomes, failed in table.rows
    ]


def run_sql(store: AuditStore, sql: str) -> Table:
    """Run an ad-hoc query with the audit database as the default (``FROM audit_events``)."""
    store.client.database = store.database
    return store.query(sql)


def to_table(rows: Sequence[Any], row_type: type[Any]) -> Table:
    """Typed analytics rows as a ``Table`` (for rendering as text, JSON or CSV)."""
    columns = tuple(f.name for f in fields(row_type))
    return Table(columns, [tuple(getattr(row, c) for c in columns) for row in rows])
