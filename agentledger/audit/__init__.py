"""The ClickHouse audit table: schema, projection and analytics, one API for both shapes.

* ``AuditStore`` — one clickhouse-connect client on the embedded engine (``chdb:///dir``)
  or a server (``http://...``); ``init()`` applies ``schema.sql``.
* ``to_row`` — an event as an audit row (pure), with personal data masked.
* ``AuditProjection`` — catches the table up with an ``EventLog`` from its tracked
  position; ``AuditKafkaProjector`` is the Kafka consumer group of the distributed shape.
* ``analytics`` — cost, failures, latency and anomalies as typed rows.

Replayed or re-delivered events never change a figure: ``audit_log`` is a
ReplacingMergeTree keyed on the event id and every query reads the ``audit_events`` view
(``FINAL``). See docs/analytics.md.
"""

from agentledger.audit.analytics import (
    AnomalyRow,
    AnomalyThresholds,
    CostRow,
    FailureRow,
    LatencyRow,
    anomalies,
    cost,
    failures,
    latency,
    run_sql,
)
from agentledger.audit.projection import AuditKafkaProjector, AuditProjection, AuditWriter
from agentledger.audit.rows import AUDIT_COLUMNS, AuditRow, to_row
from agentledger.audit.store import AuditQueryError, AuditStore, AuditStoreBusyError, Table

__all__ = [
    "AUDIT_COLUMNS",
    "AnomalyRow",
    "AnomalyThresholds",
    "AuditKafkaProjector",
    "AuditProjection",
    "AuditQueryError",
    "AuditRow",
    "AuditStore",
    "AuditStoreBusyError",
    "AuditWriter",
    "CostRow",
    "FailureRow",
    "LatencyRow",
    "Table",
    "anomalies",
    "cost",
    "failures",
    "latency",
    "run_sql",
    "to_row",
]
