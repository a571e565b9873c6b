"""The analytics page's data: the audit queries of ``agentledger analytics``, in one report.

Embedded, the in-process ClickHouse engine beside the ledger is opened for the request,
caught up with the ledger, queried and closed again, so ``agentledger analytics`` in another
process can use it in between. Distributed, the ClickHouse server is only read.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict
from typing import Any

from agentledger.audit import analytics
from agentledger.audit.projection import AuditProjection
from agentledger.audit.store import AuditStore
from agentledger.console.source import ConsoleSource
from agentledger.errors import UsageError

_lock = threading.Lock()  # one embedded engine per process: requests take turns


def analytics_report(source: ConsoleSource) -> dict[str, Any]:
    """Cost by agent, model, workflow and day; failures by agent and tool; latency
    percentiles; anomalies. Blocking: call it in a thread."""
    try:
        url = source.audit_url()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with _lock, AuditStore.connect(url, lock_timeout=10.0) as store:
        if url.startswith("chdb:"):
            store.init()
            if source.ledger is not None and source.ledger.exists():
                asyncio.run(_catch_up(source, store))
        elif not store.exists():
            raise UsageError(f"no audit tables at {store.location}; run `agentledger audit init`")
        store.client.database = store.database
        return {
            "cost": {
                by: [asdict(r) for r in analytics.cost(store, by)]
                for by in ("agent", "model", "workflow", "day")
            },
            "failures": {
                by: [asdict(r) for r in analytics.failures(store, by)] for by in ("agent", "tool")
            },
            "latency": [asdict(r) for r in analytics.latency(store)],
            "anomalies": [asdict(r) for r in analytics.anomalies(store)],
        }


async def _catch_up(source: ConsoleSource, store: AuditStore) -> None:
    from agentledger.streams.sqlite import SqliteEventLog

    assert source.ledger is not None
    log = SqliteEventLog(source.ledger)
    try:
        await AuditProjection(log, store).catch_up()
    finally:
        await log.close()
