"""The Kafka topic layout of agentledger, and creating it explicitly.

Three topics share one prefix (``agentledger`` unless told otherwise)::

    <prefix>.goals    goal submissions coming in; key = task id
    <prefix>.events   every event of every task; key = task id, so one task's events
                      stay in order on one partition
    <prefix>.dlq      dead letters: records that could not be processed, with the reason
                      and their source topic/partition/offset in headers

Topics are created here, explicitly, with their partition counts and their settings
(``TOPIC_SETTINGS``: kept forever, never compacted, a record size limit consistent with the
producers'). Nothing in agentledger relies on a broker auto-creating topics: an
auto-created topic gets the broker's default partition count and retention (7 days on
Apache Kafka, which would delete the event log), and the partition count decides which
partition each task lives on. ``check_topics`` verifies a layout that already exists.

Example::

    topics = await init_topics("127.0.0.1:9092", prefix="agentledger", partitions=8)
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from agentledger.errors import ConfigurationError, EventLogError
from agentledger.streams.kafka_clients import DLQ_MAX_RECORD_BYTES as DLQ_MAX_RECORD_BYTES
from agentledger.streams.kafka_clients import MAX_RECORD_BYTES as MAX_RECORD_BYTES
from agentledger.streams.kafka_clients import admin_client

DEFAULT_PREFIX = "agentledger"
DEFAULT_PARTITIONS = 4
"""Partitions of the goals and events topics: the most worker processes that can share
the work of one workflow. Fixed for a topic's life (more partitions move tasks)."""
DLQ_PARTITIONS = 1
"""Dead letters are few and read by people; one partition keeps them in arrival order."""

TOPIC_SETTINGS: dict[str, str] = {
    # The event log is the source of truth (a rebuild reads it from the first event of a
    # task), so nothing is ever deleted by age or size, and nothing is compacted away.
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
    "max.message.bytes": str(MAX_RECORD_BYTES + 12),
    # A task is rebuilt from the first offset at its start time (streams/task_start.py),
    # which holds only for the producers' own timestamps.
    "message.timestamp.type": "CreateTime",
}
"""Settings of the goals and events topics (the DLQ: the same with its own size limit)."""

_LEGAL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_TOPIC_NAME = 249


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """The names of the topics under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        longest = f"{self.prefix}.events"
        if not _LEGAL_NAME.match(self.prefix) or len(longest) > _MAX_TOPIC_NAME:
            raise ConfigurationError(
                f"invalid Kafka topic prefix {self.prefix!r}: use letters, digits, '.', '_' "
                f"and '-' only, at most {_MAX_TOPIC_NAME - len('.events')} characters"
            )

    @property
    def goals(self) -> str:
        return f"{self.prefix}.goals"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    def names(self) -> list[str]:
        return [self.goals, self.events, self.dlq]

    def settings(self, topic: str) -> dict[str, str]:
        """The settings ``topic`` of this layout is created with and checked against."""
        if topic == self.dlq:
            return {**TOPIC_SETTINGS, "max.message.bytes": str(DLQ_MAX_RECORD_BYTES + 12)}
        return dict(TOPIC_SETTINGS)


async def init_topics(
    bootstrap: str,
    prefix: str = DEFAULT_PREFIX,
    partitions: int = DEFAULT_PARTITIONS,
    replication: int = 1,
    *,
    dlq_partitions: int = DLQ_PARTITIONS,
    request_timeout_ms: int = 30_000,
) -> list[str]:
    """Create the goals, events and dead-letter topics; return their names.

    Idempotent: topics that already exist with the expected partition count are kept.
    A topic that exists with a different partition count is an error (ConfigurationError
    naming each one), because changing the count moves tasks to other partitions.
    """
    if partitions < 1 or dlq_partitions < 1 or replication < 1:
        raise ConfigurationError(
            f"partitions ({partitions}), dlq_partitions ({dlq_partitions}) and replication "
            f"({replication}) must each be at least 1"
        )
    layout = TopicLayout(prefix)
    wanted = {layout.goals: partitions, layout.events: partitions, layout.dlq: dlq_partitions}
    admin = admin_client(
        bootstrap, client_id="agentledger-topics", request_timeout_ms=request_timeout_ms
    )
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise EventLogError(
            f"cannot reach Kafka at {bootstrap}: {exc}; check the broker address"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(name, wanted[name], replication, topic_configs=layout.settings(name))
                    for name in missing
                ]
            )
            _raise_for_create_errors(response.to_object(), bootstrap)
        actual = await _settled_partition_counts(admin, wanted)
    except KafkaError as exc:
        raise EventLogError(f"creating topics {list(wanted)} on {bootstrap} failed: {exc}") from exc
    finally:
        await admin.close()

    mismatched = [
        f"{name} has {actual.get(name, 0)} partitions, expected {count}"
        for name, count in wanted.items()
        if actual.get(name) != count
    ]
    if mismatched:
        raise ConfigurationError(
            f"Kafka topics under prefix {prefix!r} on {bootstrap} do not match the layout: "
            + "; ".join(mismatched)
            + ". Pass the existing partition count, or use a new prefix; changing a "
            "topic's partition count moves tasks between partitions"
        )
    return layout.names()


async def partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partition count of each topic that exists (absent ones are left out).

    Only topics that ``list_topics`` reports are described: describing an unknown topic by
    name would let an auto-creating broker create it with its default partition count.
    """
    existing = set(await admin.list_topics())
    known = [t for t in topics if t in existing]
    if not known:
        return {}
    described = await admin.describe_topics(known)
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


async def _settled_partition_counts(
    admin: AIOKafkaAdminClient, wanted: dict[str, int], timeout_s: float = 15.0
) -> dict[str, int]:
    """Partition counts once every wanted topic is visible in the metadata (a topic just
    created reaches the broker's metadata cache a moment later), or as they are at the
    timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        actual = await partition_counts(admin, list(wanted))
        if all(actual.get(t) for t in wanted) or time.monotonic() > deadline:
            return actual
        await asyncio.sleep(0.1)  # metadata propagation: no event to wait on


async def topic_settings(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, dict[str, str]]:
    """The current value of each of ``TOPIC_SETTINGS``' keys, per topic."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t, None) for t in topics]
    )
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise EventLogError(
                    f"describing topic {resource['resource_name']!r} failed: "
                    f"{for_code(resource['error_code']).__name__} "
                    f"({resource.get('error_message') or ''})"
                )
            entries = resource["config_entries"]
            found[resource["resource_name"]] = {
                e["config_names"]: e["config_value"]
                for e in entries
                if e["config_names"] in TOPIC_SETTINGS
            }
    return found


def settings_problems(layout: TopicLayout, actual: dict[str, dict[str, str]]) -> list[str]:
    """What in ``actual`` could lose the log or refuse what producers send, per topic."""
    problems = []
    for topic in layout.names():
        have = actual.get(topic)
        if have is None:
            problems.append(f"{topic} is missing")
            continue
        want = layout.settings(topic)
        for key in ("retention.ms", "retention.bytes"):
            if have.get(key) != "-1":
                problems.append(
                    f"{topic} has {key}={have.get(key)} (records would be deleted; want -1)"
                )
        if "compact" in have.get("cleanup.policy", ""):
            problems.append(
                f"{topic} has cleanup.policy={have['cleanup.policy']} (compaction keeps "
                "only the last record of each task; want delete)"
            )
        stamped = have.get("message.timestamp.type", "CreateTime")
        if stamped != "CreateTime":
            problems.append(
                f"{topic} has message.timestamp.type={stamped} (a task's rebuild by start "
                "time needs the producers' timestamps; want CreateTime)"
            )
        limit = int(have.get("max.message.bytes", "0") or 0)
        if limit < int(want["max.message.bytes"]):
            problems.append(
                f"{topic} has max.message.bytes={limit}, below the producers' "
                f"{want['max.message.bytes']} (appends of large batches would be refused)"
            )
    return problems


async def check_topics(
    bootstrap: str, prefix: str = DEFAULT_PREFIX, *, request_timeout_ms: int = 30_000
) -> list[str]:
    """Problems with the settings of the layout's existing topics (empty: all good).

    Checks what could lose the log (finite retention, compaction) or refuse what the
    producers send (a smaller ``max.message.bytes``). A missing topic is a problem too.
    """
    layout = TopicLayout(prefix)
    admin = admin_client(bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        present = [t for t in layout.names() if t in existing]
        actual = await topic_settings(admin, present) if present else {}
    except KafkaError as exc:
        raise EventLogError(f"cannot read topic settings on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    return settings_problems(layout, actual)


_DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs ``config_source`` of a setting made on the topic itself."""


async def repair_topics(
    bootstrap: str, prefix: str = DEFAULT_PREFIX, *, request_timeout_ms: int = 30_000
) -> list[str]:
    """Give the layout's existing topics the settings of ``TOPIC_SETTINGS``; return what
    changed (``"topic: key old -> new"``).

    Other settings made on a topic are kept (AlterConfigs replaces a topic's whole set, so
    they are sent again); a larger ``max.message.bytes`` is kept. Missing topics are left
    to ``init_topics``. Refuses (EventLogError) a topic with a sensitive setting, whose
    value the broker does not reveal and which would otherwise be lost.
    """
    layout = TopicLayout(prefix)
    admin = admin_client(bootstrap, request_timeout_ms=request_timeout_ms)
    changes: list[str] = []
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        present = [t for t in layout.names() if t in existing]
        if not present:
            return []
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, None) for t in present]
        )
        resources = [r for response in responses for r in response.to_object()["resources"]]
        updates = []
        for resource in resources:
            topic = resource["resource_name"]
            entries = resource["config_entries"]
            current = {e["config_names"]: e["config_value"] for e in entries}
            own = [e for e in entries if e["config_source"] == _DYNAMIC_TOPIC_CONFIG]
            if any(e["is_sensitive"] for e in own):
                raise EventLogError(
                    f"{topic} has a sensitive setting the broker does not reveal; set "
                    "retention.ms=-1, retention.bytes=-1, cleanup.policy=delete with "
                    "kafka-configs.sh --alter --add-config instead"
                )
            wanted = dict(layout.settings(topic))
            limit = max(
                int(current.get("max.message.bytes") or 0), int(wanted["max.message.bytes"])
            )
            wanted["max.message.bytes"] = str(limit)
            changed = {k: v for k, v in wanted.items() if current.get(k) != v}
            if not changed:
                continue
            changes += [f"{topic}: {k} {current.get(k)} -> {v}" for k, v in changed.items()]
            merged = {e["config_names"]: e["config_value"] for e in own} | wanted
            updates.append(ConfigResource(ConfigResourceType.TOPIC, topic, merged))
        if updates:
            for response in await admin.alter_configs(updates):
                for resource in response.to_object()["resources"]:
                    if resource["error_code"] != 0:
                        raise EventLogError(
                            f"changing the settings of {resource['resource_name']} failed: "
                            f"{for_code(resource['error_code']).__name__} "
                            f"({resource.get('error_message') or ''})"
                        )
    except KafkaError as exc:
        raise EventLogError(f"cannot change topic settings on {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    return changes


async def require_topic(bootstrap: str, topic: str, *, prefix: str, timeout_s: float = 30.0) -> int:
    """``topic``'s partition count; refuses clearly when it is missing (without letting the
    broker auto-create it)."""
    admin = admin_client(bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        counts = await partition_counts(admin, [topic])
    except KafkaError as exc:
        raise EventLogError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    if topic not in counts:
        raise ConfigurationError(
            f"topic {topic!r} does not exist on {bootstrap}; create the layout first with "
            f"`agentledger kafka init --brokers {bootstrap} --prefix {prefix}` (from Python: "
            "agentledger.streams.kafka_topics.init_topics)"
        )
    return counts[topic]


def _raise_for_create_errors(response: dict[str, object], bootstrap: str) -> None:
    errors = response.get("topic_errors")
    problems = []
    for item in errors if isinstance(errors, list) else []:
        code = item["error_code"]
        if code == 0 or code == TopicAlreadyExistsError.errno:
            continue  # created, or created concurrently by someone else
        name = for_code(code).__name__
        problems.append(f"{item['topic']}: {name} ({item.get('error_message') or code})")
    if problems:
        raise EventLogError(
            f"the broker at {bootstrap} refused to create topics: " + "; ".join(problems)
        )


async def require_layout(bootstrap: str, prefix: str, *, request_timeout_s: float = 30.0) -> None:
    """What a worker checks before it runs: raise ConfigurationError unless the goals,
    events and dead-letter topics exist with settings that cannot lose the log
    (``settings_problems``)."""
    layout = TopicLayout(prefix)
    admin = admin_client(bootstrap, request_timeout_ms=int(request_timeout_s * 1000))
    try:
        await admin.start()
        counts = await partition_counts(admin, layout.names())
        settings = await topic_settings(admin, list(counts)) if counts else {}
    except KafkaError as exc:
        raise EventLogError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    finally:
        await admin.close()
    missing = [t for t in layout.names() if t not in counts]
    if missing:
        raise ConfigurationError(
            f"topics {', '.join(missing)} do not exist on {bootstrap}; create them first with "
            f"`agentledger kafka init --brokers {bootstrap} --prefix {prefix}`"
        )
    problems = settings_problems(layout, settings)
    if problems:
        raise ConfigurationError(
            f"the topics under prefix {prefix!r} on {bootstrap} could lose the event log or "
            f"refuse its records: {'; '.join(problems)}. Fix them in place with "
            f"`agentledger kafka check --fix --brokers {bootstrap} --prefix {prefix}`"
        )
