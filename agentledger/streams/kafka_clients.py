"""The one place agentledger builds its Kafka clients (producers, consumers, admin clients),
with the settings every one shares.

Every producer is idempotent (``enable_idempotence=True``, ``acks="all"``): a retried send
after a lost acknowledgement cannot store a batch twice, and a partition's batches keep
their order. Its ``max_request_size`` matches the topics' ``max.message.bytes``
(``kafka_topics.MAX_RECORD_BYTES``), so what a producer may send, the topic takes; the
dead-letter producer may send up to ``DLQ_MAX_RECORD_BYTES`` (a full-size record plus the
dead-letter headers). ``linger_ms=0``: each hop of a task is one produce, and waiting to
fill a batch would add to every hop.

Consumers never commit on their own (``enable_auto_commit=False``): whoever reads decides
when a position is stored. Admin clients are used for one request and closed.

Example::

    producer = event_producer("127.0.0.1:9092", client_id="agentledger-submit")
    await producer.start()
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

MAX_RECORD_BYTES = 1_048_576
"""The largest record batch agentledger's producers send (their ``max_request_size``) and
the goals and events topics accept (``max.message.bytes``, plus Kafka's 12-byte batch
overhead allowance). One limit on both sides: whatever a producer may send, the topic
takes, and whatever the topic holds, a worker can read and re-send."""
DLQ_MAX_RECORD_BYTES = 2 * MAX_RECORD_BYTES
"""The dead-letter topic takes twice that, so a record parked whole, with its reason and
source headers added, always fits. Bigger records are parked as a reference instead."""


def event_producer(
    bootstrap: str,
    *,
    client_id: str = "agentledger",
    max_request_size: int = MAX_RECORD_BYTES,
    request_timeout_ms: int = 30_000,
) -> AIOKafkaProducer:
    """A producer for the goals and events topics (not started)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_batch_size=max_request_size,
        max_request_size=max_request_size,
        request_timeout_ms=request_timeout_ms,
    )


def dead_letter_producer(
    bootstrap: str, *, client_id: str = "agentledger-dlq", request_timeout_ms: int = 30_000
) -> AIOKafkaProducer:
    """A producer for the dead-letter topic, whose records may be larger (not started)."""
    return event_producer(
        bootstrap,
        client_id=client_id,
        max_request_size=DLQ_MAX_RECORD_BYTES,
        request_timeout_ms=request_timeout_ms,
    )


def transactional_producer(
    bootstrap: str,
    transactional_id: str,
    *,
    client_id: str = "agentledger",
    request_timeout_ms: int = 30_000,
    transaction_timeout_ms: int = 60_000,
) -> AIOKafkaProducer:
    """An event producer with a ``transactional_id`` (not started): the exactly-once
    worker's (``kafka_eos``). Starting one with an id in use fences the earlier holder:
    its open transaction is aborted and its later commits are refused."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        transaction_timeout_ms=transaction_timeout_ms,
        linger_ms=0,
        max_batch_size=MAX_RECORD_BYTES,
        max_request_size=MAX_RECORD_BYTES,
        request_timeout_ms=request_timeout_ms,
    )


def record_consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer (not started) that never commits on its own; ``options`` are aiokafka's
    (``group_id``, ``auto_offset_reset``, ``fetch_max_wait_ms``, ...)."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, **({"enable_auto_commit": False} | options)
    )


async def broker_topics(producer: AIOKafkaProducer) -> set[str]:
    """The topics the broker behind a started ``producer`` has now (a metadata request)."""
    metadata = await producer.client.fetch_all_metadata()
    return set(metadata.topics())


def admin_client(
    bootstrap: str, *, client_id: str = "agentledger-admin", request_timeout_ms: int = 30_000
) -> AIOKafkaAdminClient:
    """An admin client (not started)."""
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=client_id, request_timeout_ms=request_timeout_ms
    )
