"""The audit table on the real ClickHouse engine, in-process through clickhouse-connect's
chdb interface, fed from a real SQLite ledger; every figure checked against the events."""

# The shared fixtures are imported (conftest.py is not ours), so their names are "redefined"
# as test parameters by design.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel

from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.audit import analytics
from agentledger.audit.cli import main as cli_main
from agentledger.audit.projection import AuditKafkaProjector, AuditProjection, AuditWriter
from agentledger.audit.rows import to_row
from agentledger.audit.store import COLUMN_TYPES, AuditQueryError, AuditStore
from agentledger.errors import ConfigurationError
from agentledger.llm import ModelPrice, PriceTable, ScriptedModel, call_tool, reply, reply_json
from agentledger.schemas import GoalSubmitted, LlmCallCompleted, WorkflowRef
from agentledger.schemas.codec import encode
from agentledger.streams.log import Recorded
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, run_goal
from agentledger.tools import tool
from tests.support.audit import (  # fixtures are imported to be found by pytest
    BASE,
    Figures,
    audit_chdb_dir,  # noqa: F401
    audit_database,  # noqa: F401
    audit_store,  # noqa: F401
    audit_url,  # noqa: F401
    check_figures,
    scenario_events,
    scenario_log,  # noqa: F401
    snapshot,
    write_ledger,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]  # a real broker for the Kafka projector


async def _logged(log: SqliteEventLog) -> Figures:
    entries = await log.read_from(0)
    return Figures([e.event for e in entries if isinstance(e, Recorded)])


def test_schema_is_applied_idempotently_with_the_documented_shape(audit_store: AuditStore) -> None:
    audit_store.init()  # a second time changes nothing
    db = audit_store.database
    columns = audit_store.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = 'audit_log' AND name != 'ingested_at' ORDER BY position",
        {"db": db},
    )
    assert dict(columns.rows) == COLUMN_TYPES
    (engine, partition, sorting, create), *_ = audit_store.query(
        "SELECT engine_full, partition_key, sorting_key, create_table_query FROM system.tables "
        "WHERE database = {db:String} AND name = 'audit_log'",
        {"db": db},
    ).rows
    assert engine.startswith("ReplacingMergeTree(ingested_at)")
    assert (partition, sorting) == ("toYYYYMM(occurred_at)", "task_id, event_id")
    assert "TTL toDateTime(occurred_at) + toIntervalDay(365)" in create
    audit_store.init(retention_days=30)
    ttl = audit_store.query(f"SHOW CREATE TABLE {db}.audit_log").rows[0][0]
    assert "toIntervalDay(30)" in ttl
    audit_store.init(retention_days=0)
    assert "TTL" not in audit_store.query(f"SHOW CREATE TABLE {db}.audit_log").rows[0][0]
    assert audit_store.exists()


async def test_catch_up_writes_every_event_once_with_workflow_and_masked_payload(
    audit_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    projection = AuditProjection(scenario_log, audit_store)
    # A small batch puts most goals in earlier batches than their tasks' later events, so the
    # workflow of those events has to come from the store.
    written = await projection.catch_up(batch_size=7)
    events = (await _logged(scenario_log)).events
    assert written == len(events)
    assert await projection.position() == await scenario_log.last_offset()
    db = audit_store.database
    rows = audit_store.query(
        f"SELECT task_id, workflow, count(), countIf(payload LIKE '%example.%'), "
        f"countIf(payload LIKE '%4111 1111%') FROM {db}.audit_events GROUP BY task_id, workflow"
    ).rows
    want = {e.task_id for e in events}
    assert {r[0] for r in rows} == want
    assert len(rows) == len(want)
    for task_id, workflow, count, emails, cards in rows:
        assert workflow == task_id.split("-")[0].replace("research", "research-brief").replace(
            "triage", "support-triage"
        )
        assert count == sum(e.task_id == task_id for e in events)
        assert emails == cards == 0  # masked
    assert await projection.catch_up() == 0  # nothing new


async def test_every_analytics_figure_matches_the_event_log(
    audit_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    await AuditProjection(scenario_log, audit_store).catch_up(batch_size=50)
    figures = await _logged(scenario_log)
    check_figures(audit_store, figures)
    # The scenario was built to hold one anomaly of each kind.
    found = analytics.anomalies(audit_store)
    assert [(a.kind, a.task_id, a.subject) for a in found] == [
        ("tool_frequency", "research-6", "search_notes"),
        ("slow_run", "research-5", ""),
        ("error_rate", "", "triager"),
    ]
    assert found[2].window_start == BASE + timedelta(days=2, hours=2)
    assert found[0].value == 12
    assert found[0].baseline == 2


async def test_time_ranges_filter_every_query(
    audit_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    await AuditProjection(scenario_log, audit_store).catch_up()
    figures = await _logged(scenario_log)
    since, until = BASE + timedelta(days=1), BASE + timedelta(days=2)
    got = {
        r.key: r.cost_usd for r in analytics.cost(audit_store, "model", since=since, until=until)
    }
    want = figures.cost("model", since, until)
    assert got == {k: pytest.approx(v[4]) for k, v in want.items()}
    assert {r.key for r in analytics.cost(audit_store, "day", since=since, until=until)} == {
        "2026-03-03"
    }
    assert analytics.cost(audit_store, since=BASE + timedelta(days=30)) == []
    late = BASE + timedelta(days=2, hours=3)
    assert [a.kind for a in analytics.anomalies(audit_store, since=late)] == []
    assert analytics.failures(audit_store, "tool", until=BASE) == []


async def test_replays_and_redelivery_do_not_change_any_figure(
    audit_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    projection = AuditProjection(scenario_log, audit_store)
    await projection.catch_up()
    before = snapshot(audit_store)
    events = (await _logged(scenario_log)).events

    # Re-delivery: the same events written again, as a Kafka consumer would after a rebalance.
    AuditWriter(audit_store).write_events(events)
    AuditWriter(audit_store).write_events(events[: len(events) // 2])
    # Replay: the projection rebuilt from offset 0, twice, without truncating.
    await projection.rebuild(batch_size=13)
    await AuditProjection(scenario_log, audit_store).rebuild()

    db = audit_store.database
    raw = audit_store.query(f"SELECT count() FROM {db}.audit_log").rows[0][0]
    assert raw > len(events)  # duplicates are stored, and
    assert snapshot(audit_store) == before  # not one figure moved
    assert audit_store.query(f"SELECT count() FROM {db}.audit_events").rows[0][0] == len(events)
    audit_store.command(f"OPTIMIZE TABLE {db}.audit_log FINAL")
    assert audit_store.query(f"SELECT count() FROM {db}.audit_log").rows[0][0] == len(events)
    assert snapshot(audit_store) == before


async def test_resume_after_a_stop_and_after_a_crash_between_rows_and_position(
    audit_store: AuditStore, tmp_path
) -> None:
    events = sorted(scenario_events(), key=lambda e: (e.occurred_at, e.task_id, e.seq))
    half = len(events) // 2
    log = SqliteEventLog(tmp_path / "ledger.db", synchronous="NORMAL")
    try:
        for e in events[:half]:
            await log.append([e])
        first = AuditProjection(log, audit_store)
        assert await first.catch_up(batch_size=10) == half
        for e in events[half:]:
            await log.append([e])
        # A crash after writing a batch's rows but before storing the position: the rows of
        # the next 25 events are in the table, the position still says `half`.
        nxt = await log.read_from(half, limit=25)
        audit_store.insert_rows(AuditWriter(audit_store).rows_for(nxt))
        # A new process resumes from the stored position, with an empty workflow map.
        resumed = AuditProjection(log, audit_store)
        assert await resumed.position() == half
        assert await resumed.catch_up(batch_size=10) == len(events) - half
        check_figures(audit_store, Figures(events))
        rebuilt = await AuditProjection(log, audit_store).rebuild(truncate=True)
        assert rebuilt == len(events)
        db = audit_store.database
        assert audit_store.query(f"SELECT count() FROM {db}.audit_log").rows[0][0] == len(events)
        check_figures(audit_store, Figures(events))
    finally:
        await log.close()


async def test_a_corrupt_record_is_visible_but_counts_as_no_outcome(
    audit_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    scenario_log.insert_raw("research-0", 999, b'{"type": "mystery"}', type_="mystery")
    projection = AuditProjection(scenario_log, audit_store)
    figures = await _logged(scenario_log)
    assert await projection.catch_up() == len(figures.events) + 1
    await projection.rebuild()  # the corrupt row is replaced, not added again
    db = audit_store.database
    (row,) = audit_store.query(
        f"SELECT task_id, status, error_kind, payload FROM {db}.audit_events "
        "WHERE type = 'corrupt_record'"
    ).rows
    assert row[:3] == ("research-0", "corrupt", "corrupt_event")
    assert "unknown event type" in row[3]
    check_figures(audit_store, figures)


def test_ad_hoc_sql_and_clear_errors(audit_store: AuditStore) -> None:
    event = scenario_events()[0]
    audit_store.insert_rows([to_row(event)])
    table = analytics.run_sql(audit_store, "SELECT task_id, type FROM audit_events")
    assert table.columns == ("task_id", "type")
    assert table.rows == [("research-0", "goal_submitted")]
    with pytest.raises(AuditQueryError, match=r"UNKNOWN_TABLE|Unknown table"):
        analytics.run_sql(audit_store, "SELECT * FROM no_such_table")


def test_stores_of_one_process_share_the_directory(audit_store: AuditStore, audit_url: str) -> None:
    audit_store.insert_rows([to_row(scenario_events()[0])])
    with AuditStore.connect(audit_url) as second:
        db = second.database
        assert second.query(f"SELECT count() FROM {db}.audit_events").rows == [(1,)]
    # The first store still works after the second one closed.
    assert audit_store.query(f"SELECT count() FROM {db}.audit_events").rows == [(1,)]


def test_a_second_directory_in_one_process_is_a_clear_error(
    audit_store: AuditStore, tmp_path
) -> None:
    with pytest.raises(ConfigurationError, match="one per process"):
        AuditStore.connect(f"chdb://{tmp_path / 'other.chdb'}")
    assert audit_store.exists()  # the open store is unharmed


def test_unsupported_locations_are_usage_errors() -> None:
    with pytest.raises(ConfigurationError, match="unsupported ClickHouse location"):
        AuditStore.connect("postgres://localhost/x")
    with pytest.raises(ConfigurationError, match="three slashes"):
        AuditStore.connect("chdb://relative/dir")
    with pytest.raises(ConfigurationError, match="not a plain ClickHouse identifier"):
        AuditStore.connect("http://localhost:1/bad-name;drop")


def test_timestamps_round_trip_as_utc(audit_store: AuditStore) -> None:
    event = scenario_events()[1]
    audit_store.insert_rows([to_row(event)])
    (stored,) = audit_store.query(
        f"SELECT occurred_at FROM {audit_store.database}.audit_events"
    ).rows[0]
    assert stored == event.occurred_at
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored.astimezone(UTC) == stored
    assert isinstance(stored, datetime)


# -- the CLI --------------------------------------------------------------------------------


async def test_cli_analytics_print_the_figures_as_json_csv_and_table(
    audit_store: AuditStore,
    audit_url: str,
    scenario_log: SqliteEventLog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = await _logged(scenario_log)
    base = ["--db", str(scenario_log.path)]
    store_opt = ["--clickhouse", audit_url]

    # The embedded shape catches up with the ledger before answering.
    assert (
        cli_main([*base, "analytics", "cost", "--by", "model", *store_opt, "--format", "json"]) == 0
    )
    got = {r["key"]: r["cost_usd"] for r in orjson.loads(capsys.readouterr().out)}
    assert got == {k: pytest.approx(v[4]) for k, v in figures.cost("model").items()}

    assert (
        cli_main([*base, "analytics", "failures", "--by", "tool", *store_opt, "--format", "csv"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "key,outcomes,failures,failure_rate"
    parsed = {line.split(",")[0]: tuple(map(int, line.split(",")[1:3])) for line in lines[1:]}
    assert parsed == figures.failures("tool")

    assert cli_main([*base, "analytics", "latency", "--by", "tool", *store_opt]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["dimension", "key", "calls", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
    assert {line.split()[1] for line in table[2:]} == set(figures.latency("tool"))

    args = [
        *base,
        "analytics",
        "anomalies",
        *store_opt,
        "--format",
        "json",
        "--since",
        "2026-03-04",
    ]
    assert cli_main(args) == 0
    found = orjson.loads(capsys.readouterr().out)
    assert [(a["kind"], a["subject"]) for a in found] == [("error_rate", "triager")]

    args = [*base, "analytics", "cost", "--by", "day", *store_opt, "--until", "2026-03-03"]
    assert cli_main([*args, "--format", "json"]) == 0
    assert [r["key"] for r in orjson.loads(capsys.readouterr().out)] == ["2026-03-02"]

    assert cli_main([*base, "sql", "SELECT count() AS n FROM audit_events", *store_opt]) == 0
    assert capsys.readouterr().out.split() == ["n", "---", str(len(figures.events))]


async def test_cli_audit_commands_and_errors(
    audit_store: AuditStore,
    audit_url: str,
    scenario_log: SqliteEventLog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    n = len((await _logged(scenario_log)).events)
    base = ["--db", str(scenario_log.path)]
    assert (
        cli_main([*base, "audit", "init", "--clickhouse", audit_url, "--retention-days", "90"]) == 0
    )
    assert "audit tables ready" in capsys.readouterr().out
    assert cli_main([*base, "audit", "sync", "--clickhouse", audit_url]) == 0
    assert f"wrote {n} audit rows" in capsys.readouterr().out
    assert cli_main([*base, "audit", "sync", "--clickhouse", audit_url]) == 0
    assert "wrote 0 audit rows" in capsys.readouterr().out
    assert cli_main([*base, "audit", "rebuild", "--truncate", "--clickhouse", audit_url]) == 0
    assert f"wrote {n} audit rows" in capsys.readouterr().out

    assert cli_main([*base, "sql", "SELEC nonsense", "--clickhouse", audit_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    missing = ["--db", "/nonexistent/ledger.db", "audit", "sync", "--clickhouse", audit_url]
    assert cli_main(missing) == 2
    assert "no ledger at /nonexistent/ledger.db" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main([*base, "analytics", "cost", "--since", "yesterday"])


async def test_the_main_cli_hooks_the_audit_commands(
    audit_store: AuditStore,
    audit_url: str,
    scenario_log: SqliteEventLog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agentledger.cli import main as agentledger_main

    figures = await _logged(scenario_log)
    argv = ["--db", str(scenario_log.path), "analytics", "cost", "--by", "workflow"]
    assert agentledger_main([*argv, "--clickhouse", audit_url, "--format", "json"]) == 0
    got = {r["key"]: (r["calls"], r["input_tokens"]) for r in orjson.loads(capsys.readouterr().out)}
    assert got == {k: v[:2] for k, v in figures.cost("workflow").items()}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_CLICKHOUSE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "agentledger.audit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **(env or {})},
        cwd=Path(__file__).parents[2],
    )


def test_embedded_default_store_beside_the_ledger_in_a_separate_process(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    figures = write_ledger(ledger)
    done = _cli("--db", str(ledger), "analytics", "cost", "--by", "agent", "--format", "json")
    assert done.returncode == 0, done.stderr
    got = {r["key"]: r["calls"] for r in orjson.loads(done.stdout)}
    assert got == {k: v[0] for k, v in figures.cost("agent").items()}
    assert (ledger.parent / "audit.chdb").is_dir()
    # The environment variable points elsewhere when set.
    other = ledger.parent / "elsewhere.chdb"
    env = {"AGENTLEDGER_CLICKHOUSE_URL": f"chdb://{other}"}
    done = _cli("--db", str(ledger), "sql", "SELECT count() FROM audit_events", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(len(figures.events))
    assert other.is_dir()


HOLDER = """
import sys
from agentledger.audit.store import AuditStore
store = AuditStore.connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


def test_a_second_process_on_the_same_directory_gets_a_clear_error(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger)
    directory = tmp_path / "busy.chdb"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"chdb://{directory}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "ready"
            args = ["--db", str(ledger), "analytics", "cost", "--lock-timeout", "0.2"]
            done = _cli(*args, "--clickhouse", f"chdb://{directory}")
            assert done.returncode == 1
            assert done.stderr.startswith(f"error: the audit store {directory} is in use by ")
            assert f"(pid {holder.pid})" in done.stderr
            assert "Traceback" not in done.stderr
        finally:
            holder.communicate("\n", timeout=60)
    # Once the holder is gone the directory is free again.
    done = _cli("--db", str(ledger), "analytics", "cost", "--clickhouse", f"chdb://{directory}")
    assert done.returncode == 0, done.stderr


# -- real runs of a workflow ------------------------------------------------------------------


class Findings(BaseModel):
    summary: str


@tool()
def search(query: str) -> dict[str, Any]:
    """Search the notes."""
    return {"hits": [f"note about {query}"], "contact": "ann@example.com"}


@tool()
def fetch(url: str) -> dict[str, Any]:
    """Fetch a page; the 'down' host is down."""
    if "down" in url:
        raise RuntimeError(f"{url} did not answer")
    return {"text": "page"}


def _brief_workflow() -> Workflow:
    return Workflow.build(
        name="brief",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("researcher", "writer")),
            AgentSpec(
                "researcher",
                tools=("search", "fetch"),
                output_model=Findings,
                routes_to=("writer",),
            ),
            AgentSpec("writer"),
        ],
        tools=[search, fetch],
    )


def _script(topic: str, host: str) -> ScriptedModel:
    return ScriptedModel(
        {
            "planner": [
                reply_json(
                    {
                        "subtasks": [
                            {"id": "r", "agent": "researcher", "description": topic},
                            {"id": "w", "agent": "writer", "depends_on": ["r"]},
                        ]
                    },
                    model="gpt-4o-mini",
                )
            ],
            "researcher": [
                call_tool("search", query=topic),
                call_tool("fetch", url=f"https://{host}/{topic}"),
                reply_json({"summary": f"{topic} found"}, model="gpt-4o"),
            ],
            "writer": [reply(f"a brief on {topic}; mail bob@example.org", model="gpt-4o-mini")],
        }
    )


async def test_real_runs_of_a_workflow_feed_the_audit_table(
    audit_store: AuditStore, tmp_path: Path
) -> None:
    prices = PriceTable(
        {
            "scripted": ModelPrice(input_per_mtok=1.0, output_per_mtok=3.0),
            "gpt-4o": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0),
            "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.6),
        }
    )
    log = SqliteEventLog(tmp_path / "ledger.db", synchronous="NORMAL")
    try:
        workflow = _brief_workflow()
        for i, host in enumerate(["ok.example", "down.example", "ok.example", "down.example"]):
            model = _script(f"topic{i}", host)
            runtime = make_runtime(workflow, model, sandbox=tmp_path / "sandbox", prices=prices)
            result = await run_goal(workflow, model, f"brief {i}", log=log, runtime=runtime)
            assert result.state.terminal
        figures = await _logged(log)
        kinds = {type(e).__name__ for e in figures.events}
        assert {"LlmCallCompleted", "ToolCallCompleted", "ToolCallFailed", "TaskCompleted"} <= kinds
        assert sum(e.cost_usd for e in figures.events if isinstance(e, LlmCallCompleted)) > 0
        await AuditProjection(log, audit_store).catch_up(batch_size=16)
        check_figures(audit_store, figures)
        assert {r.key for r in analytics.cost(audit_store, "workflow")} == {"brief"}
        assert {r.key: r.failures for r in analytics.failures(audit_store, "tool")}["fetch"] == 2
    finally:
        await log.close()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "research_brief" / "workflow.yaml"


def test_the_example_workflow_run_by_the_cli_feeds_the_audit_table(
    audit_store: AuditStore, audit_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLEDGER_")}
    env["AGENTLEDGER_HOME"] = str(tmp_path)
    goals = [
        "Write a brief on idempotency keys and retries",
        "Brief on token budgets; questions to ann@example.com",
        "Brief on Kafka partitions and ordering",
    ]
    run = [sys.executable, "-m", "agentledger.cli", "--db", str(ledger), "run", str(EXAMPLE)]
    for goal in goals:
        done = subprocess.run(
            [*run, "--goal", goal, "-q"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr

    async def logged() -> Figures:
        log = SqliteEventLog(ledger)
        try:
            return await _logged(log)
        finally:
            await log.close()

    figures = asyncio.run(logged())
    assert sum(isinstance(e, LlmCallCompleted) for e in figures.events) >= 3 * 5
    # The analytics commands catch the table up from the ledger themselves.
    argv = ["--db", str(ledger), "analytics", "cost", "--by", "workflow", "--clickhouse", audit_url]
    assert cli_main([*argv, "--format", "json"]) == 0
    (row,) = orjson.loads(capsys.readouterr().out)
    assert row["key"] == "research-brief"
    assert row["calls"] == figures.cost("workflow")["research-brief"][0]
    check_figures(audit_store, figures)
    db = audit_store.database
    goals_stored = audit_store.query(
        f"SELECT payload FROM {db}.audit_events WHERE type = 'goal_submitted'"
    ).rows
    assert len(goals_stored) == 3
    assert not any("ann@example.com" in payload for (payload,) in goals_stored)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"


async def test_every_cookbook_query_in_the_docs_runs(
    audit_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    # An unfinished run and a corrupt record, so every query has something to find.
    goal = GoalSubmitted(task_id="stuck", seq=1, goal="g", workflow=WorkflowRef(name="x"))
    await scenario_log.append([goal])
    scenario_log.insert_raw("stuck", 2, b"not json")
    await AuditProjection(scenario_log, audit_store).catch_up()
    doc = DOCS.read_text()
    queries = [block.split("```", 1)[0] for block in doc.split("```sql\n")[1:]]
    assert len(queries) >= 10
    answered = 0
    for sql in queries:
        answered += bool(analytics.run_sql(audit_store, sql.replace("'…'", "'research-0'")).rows)
    # Only the "last 30 days" query finds nothing: the scenario lies in the past.
    assert answered >= len(queries) - 1


# -- the distributed projector: a Kafka consumer group ----------------------------------------


async def test_the_kafka_projector_group_writes_every_event_once(
    audit_store: AuditStore,
    audit_url: str,
    kafka_broker: str,
    kafka_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = f"{kafka_prefix}.events"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    events = sorted(scenario_events(), key=lambda e: (e.occurred_at, e.task_id, e.seq))
    redelivered = events[:40]  # a producer retry stored these twice
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    await producer.start()
    try:
        for event in [*events, *redelivered]:
            await producer.send(topic, encode(event), key=event.task_id.encode())
        await producer.send(topic, b"not an event", key=b"research-0")
        await producer.flush()
    finally:
        await producer.stop()

    def projector() -> AuditKafkaProjector:
        return AuditKafkaProjector(
            audit_store,
            kafka_broker,
            topic=topic,
            group_id=f"{kafka_prefix}.audit",
            batch_size=64,
            session_timeout_ms=6000,
            fetch_max_wait_ms=100,
        )

    assert await projector().run(until_caught_up=True) == len(events) + len(redelivered) + 1
    check_figures(audit_store, Figures(events))
    db = audit_store.database
    corrupt = f"SELECT count() FROM {db}.audit_events WHERE type = 'corrupt_record'"
    assert audit_store.query(corrupt).rows == [(1,)]
    # The group's committed offsets are its position: a restarted member re-reads nothing.
    assert await projector().run(until_caught_up=True) == 0
    # A new group (here through the CLI) reads the topic again from the start: more copies
    # in the table, the same figures.
    argv = ["audit", "project", "--kafka", kafka_broker, "--prefix", kafka_prefix]
    argv += ["--group", f"{kafka_prefix}.audit2", "--until-caught-up", "--clickhouse", audit_url]
    assert cli_main(argv) == 0
    assert f"wrote {len(events) + len(redelivered) + 1} audit rows" in capsys.readouterr().out
    check_figures(audit_store, Figures(events))
