"""On Kafka, no value of the sensitive corpus is in any topic as written: the goals topic
(``submit_goal``), the events topic (every append, including an approval decision produced
unstamped with seq 0, as ``approve --brokers`` does) and the dead-letter topic (a corrupt
JSON record and a record that is not JSON at all)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentledger.schemas import ApprovalGranted, GoalSubmitted, ToolCallRequested, WorkflowRef
from agentledger.security.masking import Masker, SqliteVault
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord, read_partitions
from agentledger.streams.kafka_dlq import dead_letter
from agentledger.streams.kafka_runner import submit_goal
from agentledger.streams.kafka_topics import DLQ_PARTITIONS, TopicLayout, init_topics
from agentledger.streams.log import Recorded
from agentledger.streams.write_guard import WriteGuard
from tests.support.sensitive import corpus, leaked

pytestmark = pytest.mark.integration

CORPUS = corpus()
ALL_TEXT = "\n".join(item.text for item in CORPUS)


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[KafkaRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        records, _ = await read_partitions(
            consumer, topic, dict.fromkeys(range(partitions), 0), wait_ms=50
        )
    finally:
        await consumer.stop()
    return records


def as_bytes(record: KafkaRecord) -> bytes:
    headers = b"".join(k.encode() + b"=" + v for k, v in record.headers)
    return (record.key or b"") + b"\n" + (record.value or b"") + b"\n" + headers


async def test_no_topic_holds_a_raw_value(
    kafka_broker: str, kafka_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path / "home"))  # the default vault
    await init_topics(kafka_broker, kafka_prefix, partitions=2)
    layout = TopicLayout(kafka_prefix)
    guard = WriteGuard(Masker(SqliteVault(tmp_path / "vault.db")))

    task_id = await submit_goal(
        kafka_broker,
        "Handle this:\n" + ALL_TEXT,
        workflow=WorkflowRef(name="sensitive"),
        prefix=kafka_prefix,
        inputs={"customer": ALL_TEXT},
        guard=guard,
    )
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix, guard=guard) as log:
        goal = GoalSubmitted(
            task_id=task_id, seq=1, goal=ALL_TEXT, workflow=WorkflowRef(name="sensitive")
        )
        request = ToolCallRequested.caused_by(
            goal,
            subtask_id="s1",
            call_id="c1",
            tool="purge",
            arguments={"account": ALL_TEXT, "raw": orjson.dumps({"a": ALL_TEXT}).decode()},
            idempotency_key="k1",
            iteration=1,
        ).model_copy(update={"seq": 2})
        await log.append([goal, request])
    # A decision produced unstamped, by a writer that is not the task's worker (the
    # approvals CLI): the log it opens masks with the settings' vault.
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix) as log:
        decision = ApprovalGranted(
            task_id=task_id,
            seq=0,
            approval_id="ap-1",
            subtask_id="s1",
            tool="purge",
            approved_by="ann",
            note=ALL_TEXT,
        )
        await log.append([decision])
    assert (tmp_path / "home" / "vault.db").exists()  # the raw values went there

    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, enable_idempotence=False)
    await producer.start()
    try:
        corrupt_json = orjson.dumps({"type": "nonsense", "task_id": task_id, "text": ALL_TEXT})
        await dead_letter(
            producer, layout.dlq, corrupt_json, task_id.encode(),
            f"invalid event: {ALL_TEXT[:300]}", layout.events, 0, 7,
            headers=[("x-note", ALL_TEXT.encode())],
        )  # fmt: skip
        not_json = b"\xff\xfe garbage " + ALL_TEXT.encode()
        await dead_letter(producer, layout.dlq, not_json, None, "not JSON", layout.goals, 1, 3)
    finally:
        await producer.stop()

    seen: dict[str, list[KafkaRecord]] = {}
    for topic, partitions in ((layout.goals, 2), (layout.events, 2), (layout.dlq, DLQ_PARTITIONS)):
        seen[topic] = await read_topic(kafka_broker, topic, partitions)
    assert [len(seen[t]) for t in (layout.goals, layout.events, layout.dlq)] == [1, 3, 2]
    leaks = {
        topic: sorted(
            {f"{s.category}: {s.value}" for r in records for s in leaked(CORPUS, as_bytes(r))}
        )
        for topic, records in seen.items()
    }
    assert leaks == {layout.goals: [], layout.events: [], layout.dlq: []}

    # The masked records are still what they were: valid events, valid JSON, same shape.
    (parked_json,) = [r for r in seen[layout.dlq] if r.key is not None]
    parked = orjson.loads(parked_json.value or b"")
    assert set(parked) == {"type", "task_id", "text"} and "[email" in parked["text"]
    (parked_text,) = [r for r in seen[layout.dlq] if r.key is None]
    assert (parked_text.value or b"").startswith(b"\xff\xfe garbage ")
    events = [e.event for e in (r.entry() for r in seen[layout.events]) if isinstance(e, Recorded)]
    assert len(events) == 3
    stored = events[1]
    assert isinstance(stored, ToolCallRequested)
    raw = stored.arguments["raw"]
    assert isinstance(raw, str)
    inner = orjson.loads(raw)
    assert set(inner) == {"a"} and "[card:" in inner["a"]
