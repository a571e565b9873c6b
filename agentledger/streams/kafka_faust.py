"""The faust wiring of the distributed worker (``--consumer faust``; the default is
``kafka_group``): consumer group, agents, timers, and the two patches of faust internals
the worker's offset rules need.

``WorkerCore`` (``kafka_worker``) decides what to do with each record and knows nothing of
faust; this module only delivers records to it, acknowledges them when it says so, reports
rebalances, and runs the timers (health, approval expiry) and the broker watch. The offset
rules live here in one place:

- a record is acknowledged only when ``WorkerCore`` says its reactions finished
  (``when_settled``); a record that raised, or came during a rebalance, is never
  acknowledged and is delivered again after the next rebalance or restart;
- faust commits each partition's gap-free acknowledged prefix, and ``_guard_commits``
  closes the one case where faust 0.15 would commit past an unacknowledged record;
- faust's hard-coded 1.5 s fetch wait is replaced by ``--fetch-wait-ms``
  (``_lower_fetch_wait``).

``kafka_group`` is the same on a bare aiokafka consumer group (the default).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from typing import Any, TextIO

from agentledger import heap
from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.security.logs import install_log_redaction
from agentledger.settings import Settings
from agentledger.streams.kafka import KafkaRecord
from agentledger.streams.kafka_topics import require_layout
from agentledger.streams.kafka_worker import (
    WorkerConfig,
    WorkerCore,
    worker_group,
)

log = logging.getLogger("agentledger.streams.kafka_runner")  # one logger for the worker


def record_of(message: Any) -> KafkaRecord:
    """A faust ConsumerMessage as a KafkaRecord."""
    raw_headers = message.headers or ()
    items = raw_headers.items() if isinstance(raw_headers, Mapping) else raw_headers
    timestamp = message.timestamp
    return KafkaRecord(
        partition=int(message.partition),
        kafka_offset=int(message.offset),
        key=message.key,
        value=message.value,
        headers=tuple((str(k), bytes(v)) for k, v in items if v is not None),
        timestamp_ms=int(timestamp * 1000) if timestamp is not None else 0,
    )


def _lower_fetch_wait(fetch_max_wait_ms: int) -> None:
    """faust builds its group consumer with ``fetch_max_wait_ms=1500`` hard-coded; every
    hop of a task would wait for it. Replace it with ours."""
    faust_aiokafka: Any = importlib.import_module("faust.transport.drivers.aiokafka")
    thread = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread, "_agentledger_original", None) or thread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    thread._agentledger_original = original
    thread._create_worker_consumer = create_worker_consumer


class _FirstOffsets:
    """The first offset consumed per partition since the last rebalance."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], int] = {}

    def seen(self, partition: int, offset: int, topic: str) -> None:
        # min: the goals agent runs several actors, which may note their records out of order
        key = (topic, partition)
        self.first[key] = min(offset, self.first.get(key, offset))

    def forget(self) -> None:
        self.first.clear()


def _guard_commits() -> _FirstOffsets:
    """Make faust never commit past an unacknowledged record.

    faust commits the gap-free run of acknowledged offsets starting at the lowest one, but
    only checks that run starts right after the committed offset with ``> 1``: with offset
    10 committed (the next to read) and 10 still unacknowledged, an acknowledged 11 gets 12
    committed, and 10 is skipped for good. Here 10 is a record whose reaction is still
    running (an LLM call), the very case acknowledgements exist for. The guard commits
    nothing until every offset from the committed one (or, with none committed, the first
    one consumed) up to the run is acknowledged or a known gap.
    """
    faust_consumer: Any = importlib.import_module("faust.transport.consumer")
    consumer_class = faust_consumer.Consumer
    original = getattr(consumer_class, "_agentledger_new_offset", None)
    original = original or consumer_class._new_offset
    offsets = _FirstOffsets()

    def new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        if acked:
            floor = self._committed_offset[tp]
            if floor is None:
                floor = offsets.first.get((tp.topic, tp.partition))
                if floor is None:
                    return None  # where this partition starts is unknown: commit nothing yet
            gap = self._gap[tp]
            lowest = min(acked)
            for missing in range(floor, lowest):
                if not gap or not gap.at(missing):
                    return None
        result: int | None = original(self, tp)
        return result

    consumer_class._agentledger_new_offset = original
    consumer_class._new_offset = new_offset
    return offsets


def run_worker(
    workflow: Workflow,
    settings: Settings,
    config: WorkerConfig,
    *,
    out: TextIO | None = None,
    runtime: Runtime | None = None,
) -> int:
    """Run a worker until SIGTERM/SIGINT; return its exit code. Owns the calling thread."""
    # faust's own annotations are looser than its behaviour; treat it as untyped here.
    faust: Any = importlib.import_module("faust")
    from agentledger.agents.runtime import build_runtime

    out = out or sys.stdout
    install_log_redaction()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            require_layout(
                config.bootstrap, config.prefix, request_timeout_s=config.request_timeout_s
            )
        )
    except BaseException:
        loop.close()
        asyncio.set_event_loop(None)
        raise
    _lower_fetch_wait(config.fetch_max_wait_ms)
    offsets = _guard_commits()
    runtime = runtime or build_runtime(workflow, settings)
    heap.settle()  # a long run: what startup built (imports, runtime) leaves the collector

    async def build_core() -> WorkerCore:  # aiokafka clients are made inside their loop
        return WorkerCore(runtime, config, out=out)

    core = loop.run_until_complete(build_core())
    # Connected before consuming, so the broker probe has a client from the first tick.
    loop.run_until_complete(core.start())
    layout = core.layout
    heartbeat = config.heartbeat_interval_s or config.session_timeout_s / 5
    rebalance = config.rebalance_timeout_s or config.session_timeout_s + config.revoke_grace_s
    with tempfile.TemporaryDirectory(prefix="agentledger-worker-") as datadir:
        app = faust.App(
            worker_group(config.prefix),
            broker=f"kafka://{config.bootstrap}",
            store="memory://",
            datadir=datadir,
            autodiscover=False,
            web_enabled=False,
            topic_disable_leader=True,  # no extra "leader" topic; nothing here needs one
            topic_allow_declare=False,  # topics are created by `kafka init`, never implicitly
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=config.session_timeout_s,
            broker_heartbeat_interval=heartbeat,
            broker_rebalance_timeout=rebalance,
            broker_request_timeout=max(config.request_timeout_s, config.session_timeout_s + 1),
            broker_commit_interval=config.commit_interval_s,
            stream_wait_empty=False,  # our revoke handler waits, bounded by revoke_grace_s
            producer_acks=-1,
            worker_redirect_stdouts=False,
            loop=loop,
        )
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        raw |= {"key_serializer": "raw", "value_serializer": "raw"}
        goals_topic = app.topic(layout.goals, internal=False, **raw)
        events_topic = app.topic(layout.events, internal=False, **raw)

        async def goal_agent(stream: Any) -> None:
            async for event in stream.noack().events():
                record = record_of(event.message)
                offsets.seen(record.partition, record.kafka_offset, layout.goals)
                try:
                    await core.on_goal(record)
                except Exception:
                    log.exception(
                        "goal at %s[%d]@%d", layout.goals, record.partition, record.kafka_offset
                    )
                    continue  # not acknowledged: delivered again after a restart
                event.ack()

        async def event_agent(stream: Any) -> None:
            async for event in stream.noack().events():
                record = record_of(event.message)
                offsets.seen(record.partition, record.kafka_offset, layout.events)
                try:
                    reactions = await core.on_event(record)
                except Exception:
                    log.exception(
                        "event at %s[%d]@%d", layout.events, record.partition, record.kafka_offset
                    )
                    continue
                if reactions is None:
                    continue
                if reactions:
                    core.when_settled(reactions, event.ack)
                else:
                    event.ack()

        # Several goals at once (``WorkerConfig.goal_intake``): each waits on a read and an
        # append; WorkerCore serializes goals of one task, faust commits gap-free acks only.
        app.agent(goals_topic, name=f"{layout.prefix}.goals-agent", concurrency=config.goal_intake)(
            goal_agent
        )
        app.agent(events_topic, name=f"{layout.prefix}.events-agent")(event_agent)

        async def revoked(sender: Any, revoked: Any, **_: Any) -> None:
            offsets.forget()
            await core.on_revoked()

        async def assigned(sender: Any, assigned: Any, **_: Any) -> None:
            by_topic: dict[str, set[int]] = {layout.goals: set(), layout.events: set()}
            for tp in assigned:
                by_topic.setdefault(tp.topic, set()).add(int(tp.partition))
            await core.on_assigned(by_topic)

        async def before_shutdown(sender: Any, **_: Any) -> None:
            watcher.cancel()
            await core.shutdown()

        async def health() -> None:
            core.print_health()

        async def expire() -> None:
            try:
                await core.expire_approvals()
            except Exception:  # the timer must keep running; the next tick tries again
                log.exception("checking approval deadlines failed")

        app.on_partitions_revoked.connect(revoked)
        app.on_partitions_assigned.connect(assigned)
        app.on_before_shutdown.connect(before_shutdown)
        app.timer(config.health_interval_s)(health)
        app.timer(config.approval_check_interval_s)(expire)

        async def watch_broker() -> None:
            # A task of our own, not a faust timer: faust starts its timers only once the
            # first assignment has fully settled, which never happens if the broker dies
            # during it.
            while True:
                await asyncio.sleep(config.broker_probe_interval_s)
                try:
                    await core.probe_or_exit()
                except Exception:  # the watch must keep running; the next tick tries again
                    log.exception("probing the broker failed")

        watcher = loop.create_task(watch_broker())

        print(
            f"worker starting: pid={os.getpid()} workflow={workflow.name} "
            f"group={worker_group(config.prefix)} brokers={config.bootstrap}",
            file=out,
            flush=True,
        )
        worker = faust.Worker(
            app,
            loop=loop,
            loglevel=config.log_level,
            quiet=True,
            redirect_stdouts=False,
            stdout=out,
            stderr=sys.stderr,
        )
        worker.spinner = None  # a terminal spinner; it would put escape codes in the output
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
        finally:
            if not loop.is_closed():
                loop.close()
    return 0
