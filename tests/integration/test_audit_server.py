"""The audit table on a ClickHouse *server* over HTTP: the distributed shape.

These tests need a running server and run only when ``AGENTLEDGER_CLICKHOUSE_URL`` is set,
e.g. ``http://default:@localhost:8123`` (docker/compose.yaml starts one). Without it they
are reported as skipped, with the reason, so a run never passes them silently.
Each test works in a database of its own and drops it afterwards.
"""

from __future__ import annotations

# Fixtures are imported from audit_fixtures (conftest.py is not ours), so their names are
# "redefined" as test parameters by design.
# ruff: noqa: F811
import os
import uuid
from collections.abc import Iterator

import orjson
import pytest

from agentledger.audit.cli import main as cli_main
from agentledger.audit.projection import AuditProjection, AuditWriter
from agentledger.audit.store import AuditStore
from agentledger.streams.log import Recorded
from agentledger.streams.sqlite import SqliteEventLog
from tests.support.audit import (
    Figures,
    check_figures,
    scenario_log,  # noqa: F401
    snapshot,
)

SERVER = os.environ.get("AGENTLEDGER_CLICKHOUSE_URL", "")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not SERVER.startswith(("http://", "https://")),
        reason="not run: set AGENTLEDGER_CLICKHOUSE_URL=http(s)://user:pass@host:port to test "
        "the audit table against a ClickHouse server",
    ),
]


@pytest.fixture
def server_database() -> str:
    return f"agentledger_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def server_store(server_database: str) -> Iterator[AuditStore]:
    store = AuditStore.connect(SERVER, database=server_database)
    store.init()
    try:
        yield store
    finally:
        store.drop()
        store.close()


async def _figures(log: SqliteEventLog) -> Figures:
    return Figures([e.event for e in await log.read_from(0) if isinstance(e, Recorded)])


async def test_server_figures_match_the_log_and_survive_replays(
    server_store: AuditStore, scenario_log: SqliteEventLog
) -> None:
    projection = AuditProjection(scenario_log, server_store, source="server-test")
    figures = await _figures(scenario_log)
    assert await projection.catch_up(batch_size=20) == len(figures.events)
    check_figures(server_store, figures)
    before = snapshot(server_store)
    AuditWriter(server_store).write_events(figures.events)  # a re-delivered batch
    await projection.rebuild(batch_size=33)
    assert snapshot(server_store) == before
    db = server_store.database
    count = server_store.query(f"SELECT count() FROM {db}.audit_events").rows[0][0]
    assert count == len(figures.events)


async def test_server_cli_reads_without_syncing_and_syncs_on_request(
    server_store: AuditStore,
    server_database: str,
    scenario_log: SqliteEventLog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = await _figures(scenario_log)
    base = ["--db", str(scenario_log.path)]
    where = ["--clickhouse", SERVER, "--database", server_database]
    # A server is fed by its projector: analytics only read it.
    assert cli_main([*base, "analytics", "cost", *where, "--format", "json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == []
    assert cli_main([*base, "audit", "sync", *where]) == 0
    assert f"wrote {len(figures.events)} audit rows" in capsys.readouterr().out
    assert cli_main([*base, "analytics", "cost", "--by", "model", *where, "--format", "json"]) == 0
    got = {r["key"]: r["calls"] for r in orjson.loads(capsys.readouterr().out)}
    assert got == {k: v[0] for k, v in figures.cost("model").items()}


def test_server_without_tables_says_to_run_init(capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"agentledger_missing_{uuid.uuid4().hex[:8]}"
    argv = ["analytics", "cost", "--clickhouse", SERVER, "--database", missing]
    assert cli_main(argv) == 2
    assert "run `agentledger audit init" in capsys.readouterr().err
