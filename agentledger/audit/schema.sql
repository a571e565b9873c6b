-- agentledger audit schema. Applied by `agentledger audit init` (AuditStore.init()).
-- {database} and {retention_days} are filled in by AuditStore; statements are split on ';'.
--
-- Deduplication: every event is delivered at least once (replays, Kafka re-delivery, a
-- projection resumed after a crash), so audit_log may hold several copies of one event.
-- It is a ReplacingMergeTree keyed on the event: copies collapse in background merges, and
-- the audit_events view reads with FINAL, so every query through the view counts each
-- event exactly once whether or not the merge has happened yet. Query audit_events, not
-- audit_log.

CREATE DATABASE IF NOT EXISTS {database};

CREATE TABLE IF NOT EXISTS {database}.audit_log
(
    event_id       String,
    task_id        String,
    seq            UInt32,
    type           LowCardinality(String),
    agent          LowCardinality(String),
    workflow       LowCardinality(String),
    subtask_id     String,
    model          LowCardinality(String),
    provider       LowCardinality(String),
    tool           LowCardinality(String),
    -- ok | error | rejected | cancelled | warning | stop | corrupt | '' (not an outcome)
    status         LowCardinality(String),
    error_kind     LowCardinality(String),
    input_tokens   UInt64,
    output_tokens  UInt64,
    cached_tokens  UInt64,
    cost_usd       Float64,
    latency_ms     Float64,
    occurred_at    DateTime64(6, 'UTC'),
    causation_id   String,
    correlation_id String,
    -- the whole event as JSON, with personal data and secrets masked (agentledger.redaction)
    payload        String CODEC(ZSTD(3)),
    -- the version ReplacingMergeTree keeps: the latest write of an event wins
    ingested_at    DateTime64(6, 'UTC') DEFAULT now64(6),
    INDEX occurred_idx occurred_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
-- An event's occurred_at never changes, so all copies of it land in the same partition,
-- which is where ReplacingMergeTree collapses them.
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (task_id, event_id)
TTL toDateTime(occurred_at) + INTERVAL {retention_days} DAY DELETE;

CREATE VIEW IF NOT EXISTS {database}.audit_events AS
SELECT * EXCEPT ingested_at FROM {database}.audit_log FINAL;

-- Where each source's projection has got to: the position lives beside the rows it covers,
-- so a fresh or wiped audit store starts from offset 0 on its own.
CREATE TABLE IF NOT EXISTS {database}.audit_positions
(
    source     String,
    position   UInt64,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY source;
