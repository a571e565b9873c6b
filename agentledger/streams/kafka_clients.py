"""The one place agentledger builds its Kafka clients (producers, consumers, admin clients),
with the settings every one shares.

Every producer is idempotent (``enable_idempotence=True``, ``acks="all"``): a retried send
after a lost acknowledgement cannot store a batch twice, and a partition's batches keep
their order. Its ``max_request_size`` matches the topics' ``max.message.bytes``
(``kafka_topics.MAX_RECORD_BYTES``), so what a producer may send, the topic takes; the
dead-letter producer may send up to ``DLQ_MAX_RECORD_BYTES`` (a full-size record plus the
dead-letter headers). ``linger_ms=0``: each hop of a task is one produce, and waiting to
fill a batch would add to every hop; appends made at once are put together without
waiting instead (``kafka_writer``).

Consumers never commit on their own (``enable_auto_commit=False``): whoever reads decides
when a position is stored. Admin clients are used for one request and closed. Short reads
(a task's history) borrow a started consumer from a ``ConsumerPool`` instead of starting
one each time.

Example::

    producer = event_producer("127.0.0.1:9092", client_id="agentledger-submit")
    await producer.start()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agentledger.errors import EventLogError

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


class ConsumerPool:
    """Started consumers without a group, lent for one read at a time and kept for the next.

    Starting a consumer costs a bootstrap, a metadata request and a new connection: about
    25 ms of a worker's CPU and wall time on a 2-core machine, more than the read of a
    task's history that follows. A pool pays it once per consumer. At most ``size`` reads
    run at once (each needs a consumer of its own: a read reassigns it); more wait.

    A consumer whose read did not end cleanly (an error, a timeout, a cancellation) is
    stopped instead of returned, so a broken connection or a restarted broker costs that
    one read, and the next read starts a fresh consumer. ``factory`` builds a consumer (not
    started); ``where`` names the broker in errors.
    """

    def __init__(self, factory: Callable[[], AIOKafkaConsumer], where: str, size: int = 4) -> None:
        self._factory = factory
        self._where = where
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AIOKafkaConsumer] = []
        self._closed = False
        self.started = 0
        """Consumers started so far (a figure for tests and benchmarks)."""

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[AIOKafkaConsumer]:
        """A started consumer for one read; raises EventLogError if none can be started."""
        if self._closed:
            raise EventLogError(f"the consumer pool for {self._where} is closed")
        async with self._slots:
            consumer = self._idle.pop() if self._idle else await self._start()
            clean = False
            try:
                yield consumer
                clean = True
            finally:
                if clean and not self._closed:
                    self._idle.append(consumer)
                else:
                    await consumer.stop()

    async def close(self) -> None:
        """Stop the idle consumers; consumers lent out are stopped when given back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for consumer in idle:
            await consumer.stop()

    async def _start(self) -> AIOKafkaConsumer:
        consumer = self._factory()
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise EventLogError(f"cannot reach Kafka at {self._where}: {exc}") from exc
        self.started += 1
        return consumer


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
