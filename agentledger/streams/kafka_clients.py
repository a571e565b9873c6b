"""The one place agentledger builds its Kafka producers, with the settings every one shares.

Every producer is idempotent (``enable_idempotence=True``, ``acks="all"``): a retried send
after a lost acknowledgement cannot store a batch twice, and a partition's batches keep
their order. Its ``max_request_size`` matches the topics' ``max.message.bytes``
(``kafka_topics.MAX_RECORD_BYTES``), so what a producer may send, the topic takes; the
dead-letter producer may send up to ``DLQ_MAX_RECORD_BYTES`` (a full-size record plus the
dead-letter headers). ``linger_ms=0``: each hop of a task is one produce, and waiting to
fill a batch would add to every hop.

Example::

    producer = event_producer("127.0.0.1:9092", client_id="agentledger-submit")
    await producer.start()
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from agentledger.streams.kafka_topics import DLQ_MAX_RECORD_BYTES, MAX_RECORD_BYTES


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
