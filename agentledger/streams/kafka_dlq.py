"""Dead letters on Kafka: park a record that cannot be processed, list them, re-drive them.

A dead letter is the original record, bytes and key unchanged, produced to the
``<prefix>.dlq`` topic with headers saying why and where it came from::

    x-agentledger-reason            what was wrong, for a person to read
    x-agentledger-source-topic      where the record was read from ...
    x-agentledger-source-partition  ... which partition ...
    x-agentledger-source-offset     ... and at which Kafka offset
    x-agentledger-failed-at         when it was parked (ISO 8601, UTC)

The original record's own headers travel along, so re-driving (producing the parked
bytes, key and headers to the source topic again) gives back the record as it was, with
one exception: personal data and secrets are masked before parking (``mask_record``), so
the dead-letter topic never holds a raw value whatever was sent to the source topic. A
record that decodes as JSON is masked as a structure and stays valid JSON of the same
shape; other bytes are masked as text. A record with nothing to mask is parked byte for
byte. A re-driven event that had been stored after all is a duplicate; readers dedupe on
``event_id``.

A record too large to park whole (``park_whole``: more than ``MAX_RECORD_BYTES``) is
parked as a *reference* instead (``dead_letter_reference``): the value is a small JSON
object naming the source topic, partition, offset and size, a masked preview of the first
bytes and the reason, with the header ``x-agentledger-parked: reference``. The original
stays where it was (topics keep records forever, see kafka_topics); a reference cannot be
re-driven, only inspected (``kcat -C -t TOPIC -p P -o OFFSET -c 1``).

A worker parks through ``DeadLetters``: whole, else as a reference, else (not even a
reference could be parked) the record is logged with its coordinates, skipped and counted,
so no record ever blocks its partition. ``DeadLetters.refuse_oversize`` parks a record
larger than an event may be before anything tries to decode or append it.

Example::

    await dead_letter(producer, layout.dlq, record.value, record.key, "not JSON: ...",
                      layout.goals, record.partition, record.kafka_offset)
    for letter in await read_dead_letters(bootstrap, layout.dlq):
        await redrive(producer, letter)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from agentledger.errors import EventLogError, UsageError
from agentledger.errors import RecordTooLargeError as TooLarge
from agentledger.redaction import redact, redact_text
from agentledger.streams.kafka import KafkaRecord, deadline, read_partitions
from agentledger.streams.kafka_clients import record_consumer
from agentledger.streams.kafka_topics import MAX_RECORD_BYTES, require_topic

# The worker's one logger (log configs refer to it): dead-letter lines are worker lines.
log = logging.getLogger("agentledger.streams.kafka_runner")

HEADER_REASON = "x-agentledger-reason"
HEADER_SOURCE_TOPIC = "x-agentledger-source-topic"
HEADER_SOURCE_PARTITION = "x-agentledger-source-partition"
HEADER_SOURCE_OFFSET = "x-agentledger-source-offset"
HEADER_FAILED_AT = "x-agentledger-failed-at"
HEADER_PARKED = "x-agentledger-parked"
DLQ_HEADERS = frozenset(
    {
        HEADER_REASON,
        HEADER_SOURCE_TOPIC,
        HEADER_SOURCE_PARTITION,
        HEADER_SOURCE_OFFSET,
        HEADER_FAILED_AT,
        HEADER_PARKED,
    }
)
PREVIEW_BYTES = 512
"""How much of an oversize record a reference shows (masked)."""

Headers = Sequence[tuple[str, bytes]]

Mask = Callable[[Any], Any]
"""Masks a JSON-like value (``redact``, or a ``Masker.mask`` that keeps raw values in its vault)."""


def mask_record(data: bytes | None, mask: Mask = redact) -> bytes | None:
    """``data`` with personal data and secrets masked; the same bytes when there are none.

    JSON is decoded, masked as a structure and encoded again (valid JSON, same shape);
    anything else is masked as text, bytes that are not UTF-8 kept as they were."""
    if not data:
        return data
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", errors="surrogateescape")
        masked_text = mask(text)
        return data if masked_text == text else str(masked_text).encode("utf-8", "surrogateescape")
    masked = mask(decoded)
    return data if masked == decoded else orjson.dumps(masked)


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A parked record: the original key, value and headers, and why and whence.

    ``source_*`` and ``failed_at`` are None when a header is missing or unreadable (a
    record some other tool wrote to the dead-letter topic).
    """

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    failed_at: datetime | None
    reference: bool = False
    """The value is a reference to the source record (too large to park), not the record."""

    @classmethod
    def of(cls, record: KafkaRecord) -> DeadLetter:
        return cls(
            partition=record.partition,
            offset=record.kafka_offset,
            key=record.key,
            value=record.value,
            headers=tuple((k, v) for k, v in record.headers if k not in DLQ_HEADERS),
            reason=record.header(HEADER_REASON) or "(no reason recorded)",
            source_topic=record.header(HEADER_SOURCE_TOPIC),
            source_partition=_int(record.header(HEADER_SOURCE_PARTITION)),
            source_offset=_int(record.header(HEADER_SOURCE_OFFSET)),
            failed_at=_time(record.header(HEADER_FAILED_AT)),
            reference=record.header(HEADER_PARKED) == "reference",
        )


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _time(text: str | None) -> datetime | None:
    try:
        return None if text is None else datetime.fromisoformat(text)
    except ValueError:
        return None


class RecordSender(Protocol):
    """What parking needs of a producer: an ``AIOKafkaProducer``, or a stand-in (tests)."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Any = None,
    ) -> Any: ...


async def dead_letter(
    producer: RecordSender,
    topic: str,
    raw_value: bytes | None,
    key: bytes | None,
    reason: str,
    source_topic: str,
    partition: int,
    offset: int,
    *,
    headers: Headers = (),
    failed_at: datetime | None = None,
    reference: bool = False,
    mask: Mask = redact,
) -> Placed:
    """Park a record on the dead-letter ``topic``; wait until the broker has it.

    ``headers`` are the original record's own headers, kept for re-driving. The value,
    key, headers and reason are masked with ``mask`` first (see ``mask_record``).
    """
    if raw_value is None and key is None:
        raise UsageError("a dead letter needs the original value or key; both are None")
    at = (failed_at or datetime.now(UTC)).astimezone(UTC)
    raw_value, key = mask_record(raw_value, mask), mask_record(key, mask)
    own = [(k, mask_record(v, mask) or b"") for k, v in headers if k not in DLQ_HEADERS]
    parked = [
        (HEADER_REASON, str(mask(reason)).encode()),
        (HEADER_SOURCE_TOPIC, source_topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
        (HEADER_FAILED_AT, at.isoformat().encode()),
    ]
    if reference:
        parked.append((HEADER_PARKED, b"reference"))
    try:
        metadata = await producer.send_and_wait(
            topic, value=raw_value, key=key, headers=own + parked
        )
    except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
        raise TooLarge(
            f"a record from {source_topic}[{partition}]@{offset} is too large to park on "
            f"{topic}: {exc}; park a reference to it instead (dead_letter_reference)"
        ) from exc
    except KafkaError as exc:
        raise EventLogError(
            f"parking a record from {source_topic}[{partition}]@{offset} on {topic} failed: "
            f"{exc}; it was not acknowledged, so do not commit past it"
        ) from exc
    return Placed(topic, int(metadata.partition), int(metadata.offset))


def record_size(record: KafkaRecord) -> int:
    """Bytes of a record's key, value and headers (what counts against size limits)."""
    headers = sum(len(k) + len(v) for k, v in record.headers)
    return len(record.key or b"") + len(record.value or b"") + headers


def park_whole(record: KafkaRecord) -> bool:
    """Whether ``record`` can be parked as it is (the DLQ takes twice this, headers included)."""
    return record_size(record) <= MAX_RECORD_BYTES


async def dead_letter_reference(
    producer: RecordSender,
    topic: str,
    record: KafkaRecord,
    reason: str,
    source_topic: str,
    *,
    failed_at: datetime | None = None,
) -> Placed:
    """Park a small reference to ``record`` (left in ``source_topic``) on ``topic``.

    The value is JSON: ``{"reference": true, "topic", "partition", "offset", "size",
    "preview", "reason"}``; the preview (the first ``PREVIEW_BYTES`` bytes as text) is
    masked like any log line. The key is the original key (truncated to 256 bytes).
    """
    preview = (record.value or b"")[:PREVIEW_BYTES].decode("utf-8", "replace")
    value = orjson.dumps(
        {
            "reference": True,
            "topic": source_topic,
            "partition": record.partition,
            "offset": record.kafka_offset,
            "size": record_size(record),
            "preview": redact_text(preview),
            "reason": reason,
        }
    )
    return await dead_letter(
        producer,
        topic,
        value,
        (record.key or b"")[:256] or None,
        reason,
        source_topic,
        record.partition,
        record.kafka_offset,
        failed_at=failed_at,
        reference=True,
    )


async def read_dead_letters(
    bootstrap: str,
    topic: str,
    *,
    limit: int | None = None,
    fetch_max_wait_ms: int = 100,
    request_timeout_ms: int = 30_000,
) -> list[DeadLetter]:
    """The dead letters on ``topic`` now, oldest first (per partition, in offset order)."""
    prefix = topic.removesuffix(".dlq")
    partitions = await require_topic(
        bootstrap, topic, prefix=prefix, timeout_s=request_timeout_ms / 1000
    )
    consumer = record_consumer(
        bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        request_timeout_ms=request_timeout_ms,
    )
    try:
        await consumer.start()
        async with deadline(request_timeout_ms / 1000, f"reading {topic}"):
            records, _ = await read_partitions(
                consumer,
                topic,
                dict.fromkeys(range(partitions), 0),
                limit=limit,
                wait_ms=max(10, fetch_max_wait_ms),
            )
    except KafkaError as exc:
        raise EventLogError(f"reading {topic} from {bootstrap} failed: {exc}") from exc
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.kafka_offset))
    letters = [DeadLetter.of(r) for r in records]
    return letters if limit is None else letters[:limit]


async def redrive(
    producer: AIOKafkaProducer, letter: DeadLetter, *, topic: str | None = None
) -> Placed:
    """Produce ``letter``'s original key, bytes and headers to its source topic again.

    Keyed records go where the producer's partitioner puts the key (the partition they
    came from while the partition count is unchanged); unkeyed ones to their source
    partition. ``topic`` overrides the destination.
    """
    target = topic or letter.source_topic
    if target is None:
        raise UsageError(
            f"dead letter {letter.partition}@{letter.offset} does not say its source topic; "
            "pass topic= to choose where to re-drive it"
        )
    if letter.value is None and letter.key is None:
        raise UsageError(f"dead letter {letter.partition}@{letter.offset} has no key or value")
    if letter.reference:
        raise UsageError(
            f"dead letter {letter.partition}@{letter.offset} is a reference to a record too "
            f"large to park ({letter.source_topic}[{letter.source_partition}]"
            f"@{letter.source_offset}); it cannot be re-driven: fix the producer, and submit "
            "a smaller record"
        )
    partition = None
    if letter.key is None and target == letter.source_topic:
        partition = letter.source_partition
    try:
        metadata = await producer.send_and_wait(
            target,
            value=letter.value,
            key=letter.key,
            partition=partition,
            headers=list(letter.headers),
        )
    except KafkaError as exc:
        raise EventLogError(f"re-driving a dead letter to {target} failed: {exc}") from exc
    return Placed(target, int(metadata.partition), int(metadata.offset))


class DeadLetterProducer(RecordSender, Protocol):
    """The producer a worker parks dead letters with (``kafka_clients.dead_letter_producer``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Retrying = Callable[..., Awaitable[Any]]
"""Runs a Kafka operation ``(operation, *, attempts=N)``, retrying broker trouble with
backoff and raising ``EventLogError`` once it gives up (``WorkerCore._retrying``)."""


class DeadLetters:
    """A worker's dead-letter sink: parks records that cannot be processed, and counts
    them (``parked``) and the ones that could not even be parked (``skipped``).

    ``retrying`` runs each park with the worker's backoff, at most ``attempts`` times;
    ``mask`` masks what is parked (raw values kept in the vault, as on the log).
    """

    def __init__(
        self,
        producer: DeadLetterProducer,
        topic: str,
        *,
        retrying: Retrying,
        mask: Mask = redact,
        attempts: int = 5,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self._retrying = retrying
        self._mask = mask
        self._attempts = max(1, attempts)
        self.started = False
        self.parked = 0
        self.skipped = 0  # could not even be parked: logged, skipped, counted

    async def start(self, bootstrap: str) -> None:
        """Start the producer; raises ``EventLogError`` when the broker cannot be reached."""
        try:
            await self.producer.start()
        except KafkaError as exc:
            await self.producer.stop()
            raise EventLogError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        self.started = True

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.producer.stop()

    async def refuse_oversize(self, record: KafkaRecord, source: str) -> bool:
        """Dead-letter a record larger than the events topic takes; True if it was one.

        Such a record can only come from a producer whose limit was raised beyond ours (and a
        topic to match): it could never be appended, and retrying would block its partition.
        """
        size = record_size(record)
        if size <= MAX_RECORD_BYTES:
            return False
        await self.park(
            record,
            source,
            f"oversize record: {size} bytes, more than the {MAX_RECORD_BYTES} an event may "
            "take; send it smaller (large data belongs in a file or store the event names)",
        )
        return True

    async def park(self, record: KafkaRecord, source: str, reason: str) -> None:
        """Park ``record`` on the DLQ: whole if it fits and the DLQ takes it, else as a
        reference; if even the reference cannot be parked, log it, count it in ``skipped``
        and move on, so no record blocks its partition. (The record itself stays in its
        source topic, which keeps records forever.)"""
        if not self.started:
            raise UsageError("the worker is not started")
        where = f"{source}[{record.partition}]@{record.kafka_offset}"
        # One line per dead letter, whatever the reason holds (validation errors span lines).
        log.warning("dead letter from %s: %s", where, _one_line(reason))
        if record.value is None and record.key is None:
            return  # nothing to park (an empty tombstone); skipping it loses nothing
        if park_whole(record):
            try:
                await self._retrying(
                    lambda: self._park(record, source, reason), attempts=self._attempts
                )
                self.parked += 1
                return
            except EventLogError as exc:  # too large, or refused attempts times
                log.warning(
                    "dead letter from %s: parking a reference instead (%s)", where, _one_line(exc)
                )
        try:
            await self._retrying(
                lambda: dead_letter_reference(self.producer, self.topic, record, reason, source),
                attempts=self._attempts,
            )
        except EventLogError as exc:
            self.skipped += 1
            log.error(
                "record %s skipped: not even a reference could be parked on %s (%s); "
                "reason it was refused: %s",
                where,
                self.topic,
                _one_line(exc),
                _one_line(reason),
            )
            return
        self.parked += 1

    async def _park(self, record: KafkaRecord, source: str, reason: str) -> Placed:
        return await dead_letter(
            self.producer,
            self.topic,
            record.value,
            record.key,
            reason,
            source,
            record.partition,
            record.kafka_offset,
            headers=record.headers,
            mask=self._mask,
        )


def _one_line(text: object) -> str:
    return " ".join(str(text).split())
