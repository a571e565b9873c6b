"""Exactly-once on the real broker: ``agentledger worker --exactly-once`` with workers
SIGKILLed while their transactions are open (every task completes, a read_committed reader
sees each reaction once and no seq gap); a SIGSTOPped zombie fenced by its successor (its
late output refused, exit 4); a partition's next holder fences the previous one, whose open
transaction is aborted and never visible; records handed out during a rebalance fetched
again; CLI readers that never show aborted records; the flag's validation."""

from __future__ import annotations

import asyncio
import io
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.schemas import Event, GoalSubmitted, TaskCompleted, ToolCallFailed, WorkflowRef
from agentledger.settings import Settings
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord, read_partitions
from agentledger.streams.kafka_clients import record_consumer, transactional_producer
from agentledger.streams.kafka_eos import TransactionalLog, Transactions
from agentledger.streams.kafka_group import GroupWorker
from agentledger.streams.kafka_runner import WorkerConfig, WorkerCore, submit_goal
from agentledger.streams.kafka_topics import init_topics
from tests.integration.test_kafka_worker import (
    FIXTURE,
    PARTITIONS,
    executions,
    main_cli,
    running_cluster,
    wait_for,
)

pytestmark = pytest.mark.integration


async def _records(
    bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS
) -> list[KafkaRecord]:
    consumer = record_consumer(
        bootstrap, group_id=None, isolation_level=isolation, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        records, _ = await read_partitions(
            consumer,
            topic,
            dict.fromkeys(range(partitions), 0),
            wait_ms=50,
            committed=isolation == "read_committed",
        )
    finally:
        await consumer.stop()
    return records


def _events(records: list[KafkaRecord]) -> list[Event]:
    out = []
    for record in records:
        entry = record.entry()
        assert isinstance(entry, Recorded), entry
        out.append(entry.event)
    return out


def _committed_events(bootstrap: str, topic: str) -> list[Event]:
    return _events(asyncio.run(_records(bootstrap, topic, "read_committed")))


def assert_each_reaction_once(events: list[Event]) -> None:
    """Every event id once; each task's seqs 1..n without a gap; the events caused by one
    causation id form one run of consecutive seqs, i.e. one committed batch (a reaction whose
    output became visible twice would show it again at later seqs)."""
    assert len({e.event_id for e in events}) == len(events), "an event stored twice"
    by_task: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_task[event.task_id].append(event)
    for task_id, task in by_task.items():
        assert sorted(e.seq for e in task) == list(range(1, len(task) + 1)), task_id
        caused: dict[str, list[int]] = defaultdict(list)
        for event in task:
            if event.causation_id:
                caused[event.causation_id].append(event.seq)
        for cause, seqs in caused.items():
            assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1)), (task_id, cause, seqs)


def test_workers_killed_mid_transaction_leave_each_reaction_visible_once(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Two exactly-once workers, six tasks; one worker is SIGKILLed while reactions are in
    flight (its lanes hold open transactions) and a successor joins: the successor fences
    the dead worker's lanes, takes the records that arrive while it opens them (they are
    given back to the consumer, not skipped), and every task completes."""
    env = {"DELIVERIES_MODEL_DELAY": "0.2"}
    args = ("--exactly-once",)
    with running_cluster(kafka_broker, tmp_path, env=env, worker_args=args) as cluster:
        for worker in cluster.workers:
            assert "consumer=aiokafka exactly_once=on" in worker.output(), worker.describe()
        tasks = [
            asyncio.run(
                submit_goal(cluster.bootstrap, "deliver", workflow=FIXTURE, prefix=cluster.prefix)
            )
            for _ in range(6)
        ]

        def delivered(count: int) -> bool:
            cluster.assert_alive_or_killed()
            return sum(executions(tmp_path).values()) >= count

        wait_for(lambda: delivered(3), 60, "deliveries\n" + cluster.describe())
        victim = cluster.workers[0]
        victim.process.send_signal(signal.SIGKILL)
        cluster.killed.add(victim.pid)
        victim.process.wait(timeout=10)
        cluster.start_worker(2)

        def all_ended() -> list[Event] | None:
            cluster.assert_alive_or_killed()
            events = _committed_events(cluster.bootstrap, cluster.layout.events)
            ended = {e.task_id for e in events if e.type in ("task_completed", "task_failed")}
            return events if ended >= set(tasks) else None

        started = time.monotonic()
        committed = wait_for(all_ended, 90, "every task to end\n" + cluster.describe())
        recovered_s = time.monotonic() - started

    assert {e.task_id for e in committed} == set(tasks)
    assert_each_reaction_once(committed)
    for task_id in tasks:
        last = max((e for e in committed if e.task_id == task_id), key=lambda e: e.seq)
        assert isinstance(last, TaskCompleted), (task_id, last.type)
        assert last.result == "delivered: p1, p2, p3"
    # No delivery ran twice, and every recorded completion really ran. A delivery the
    # victim was running when it was killed is not run again (the tool is not declared
    # safe_to_retry): it ends as outcome_unknown, never as a second execution.
    ran = executions(tmp_path)
    assert all(n == 1 for n in ran.values()), ran
    requested = {e.idempotency_key for e in committed if e.type == "tool_call_requested"}
    completed = {
        e.idempotency_key for e in committed if e.type == "tool_call_completed" and not e.replayed
    }
    unknown = {
        e.idempotency_key
        for e in committed
        if isinstance(e, ToolCallFailed) and e.error_kind == "outcome_unknown"
    }
    assert len(requested) == 3 * len(tasks)
    assert completed <= set(ran), completed - set(ran)
    assert requested == completed | unknown, requested - completed - unknown
    assert len(unknown) < len(requested) // 2, unknown  # only what the victim had in hand
    assert recovered_s < 90


def test_a_zombie_worker_is_fenced_and_its_late_output_never_visible(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A worker stopped (SIGSTOP) while its reactions wait for the model outlives its
    membership: the other worker takes its partitions and fences its lanes. Resumed, the
    zombie's reactions finish and their transaction is refused: it exits with code 4, and
    a read_committed reader sees each reaction once (the successor's)."""
    env = {"DELIVERIES_MODEL_DELAY": "1.0"}
    args = ("--exactly-once",)
    with running_cluster(kafka_broker, tmp_path, env=env, worker_args=args) as cluster:
        zombie, successor = cluster.workers
        tasks = [
            asyncio.run(
                submit_goal(cluster.bootstrap, "deliver", workflow=FIXTURE, prefix=cluster.prefix)
            )
            for _ in range(4)
        ]

        deliveries = tmp_path / "sandbox" / "deliveries.log"

        def zombie_busy() -> bool:  # it has made a delivery: its tasks are under way
            cluster.assert_alive()
            lines = deliveries.read_text().splitlines() if deliveries.exists() else []
            return any(line.split()[-1] == str(zombie.pid) for line in lines)

        wait_for(zombie_busy, 60, "a delivery\n" + cluster.describe())
        zombie.process.send_signal(signal.SIGSTOP)
        cluster.killed.add(zombie.pid)  # exits on its own below; not an error
        try:
            wait_for(
                lambda: successor.events_partitions() == set(range(PARTITIONS)),
                60,
                "the successor to take every partition\n" + cluster.describe(),
            )
        finally:
            zombie.process.send_signal(signal.SIGCONT)
        code = zombie.process.wait(timeout=60)
        assert code == 4, zombie.describe()
        assert "transaction_failed=true" in zombie.output(), zombie.describe()

        def all_ended() -> list[Event] | None:
            assert successor.process.poll() is None, successor.describe()
            events = _committed_events(cluster.bootstrap, cluster.layout.events)
            ended = {e.task_id for e in events if e.type in ("task_completed", "task_failed")}
            return events if ended >= set(tasks) else None

        committed = wait_for(all_ended, 90, "every task to end\n" + cluster.describe())

    assert {e.task_id for e in committed} == set(tasks)
    assert_each_reaction_once(committed)
    for task_id in tasks:
        last = max((e for e in committed if e.task_id == task_id), key=lambda e: e.seq)
        assert isinstance(last, TaskCompleted), (task_id, last.type)
    # Tool side effects are not in the transaction: resumed, the zombie may run a delivery
    # it fetched before it learns it was fenced (a successor's tool_call_started, say). It
    # runs it with the same idempotency key, which is what the target dedupes on, and its
    # outcome is never visible. The successor never runs a key twice.
    lines = [line.split() for line in deliveries.read_text().splitlines()]
    by_key: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        by_key[line[0]].append(line[-1])
    requested = {e.idempotency_key for e in committed if e.type == "tool_call_requested"}
    assert set(by_key) <= requested
    for key, pids in by_key.items():
        assert pids.count(str(successor.pid)) <= 1, (key, pids)
        assert len(pids) == 1 or str(zombie.pid) in pids, (key, pids)
    outcomes = [
        e.idempotency_key
        for e in committed
        if e.type in ("tool_call_completed", "tool_call_failed")
    ]
    assert sorted(outcomes) == sorted(requested)  # one visible outcome per call


def test_exactly_once_refuses_the_faust_consumer() -> None:
    code, _, err = main_cli(
        "worker", str(FIXTURE), "--brokers", "127.0.0.1:1", "--exactly-once", "--consumer", "faust"
    )
    assert code == 2
    assert "--exactly-once runs on the aiokafka consumer" in err
    assert "Traceback" not in err


def test_the_next_holder_of_a_partition_fences_the_previous_one(
    kafka_broker: str, kafka_prefix: str
) -> None:
    async def scenario() -> tuple[list[str], list[Event], list[Event]]:
        prefix = kafka_prefix
        await init_topics(kafka_broker, prefix=prefix, partitions=1, replication=1)
        failures: list[str] = []
        tp = TopicPartition(f"{prefix}.events", 0)

        def lanes(log: KafkaEventLog, name: str) -> Transactions:
            return Transactions(
                log,
                group_id=f"{prefix}.workers",
                position=lambda _: None,
                on_fatal=lambda exc: failures.append(f"{name}: {type(exc).__name__}"),
            )

        def goal(task_id: str) -> GoalSubmitted:
            return GoalSubmitted(
                task_id=task_id, seq=1, goal="g", workflow=WorkflowRef(name="deliveries")
            )

        logs = [KafkaEventLog(kafka_broker, prefix=prefix, isolation_level="read_committed")]
        logs.append(KafkaEventLog(kafka_broker, prefix=prefix, isolation_level="read_committed"))
        for log in logs:
            await log.start()
        zombie, successor = lanes(logs[0], "zombie"), lanes(logs[1], "successor")
        await zombie.open([tp])
        # the zombie's append is sent inside its open transaction; then it stalls
        zombie_lane = zombie.lanes[tp]
        await zombie_lane.producer.begin_transaction()
        batch = logs[0]._build_batch(zombie_lane.producer, [goal("t-zombie")])
        await (await zombie_lane.producer.send_batch(batch, tp.topic, partition=0))
        await successor.open([tp])  # fences the zombie: its transaction is aborted
        if zombie_lane.runner is not None:
            zombie_lane.runner.cancel()  # the zombie commits by hand below
        try:
            await zombie_lane.producer.commit_transaction()
        except Exception as exc:
            failures.append(f"zombie commit: {type(exc).__name__}")
        stored = await TransactionalLog(logs[1], successor).append([goal("t-successor")])
        assert stored
        committed = _events(await _records(kafka_broker, tp.topic, "read_committed", 1))
        everything = _events(await _records(kafka_broker, tp.topic, "read_uncommitted", 1))
        await successor.close()
        await zombie_lane.producer.stop()
        for log in logs:
            await log.close()
        return failures, committed, everything

    failures, committed, everything = asyncio.run(scenario())
    assert failures and failures[0].startswith("zombie commit: "), failures
    assert [e.task_id for e in committed] == ["t-successor"]
    assert "t-zombie" in {e.task_id for e in everything}  # stored, aborted, never visible


def test_kafka_readers_do_not_show_aborted_records(kafka_broker: str, kafka_prefix: str) -> None:
    """`agentledger kafka events|status` read committed data only: a record of an aborted
    transaction (a fenced or crashed exactly-once worker's) is stored but never shown."""

    async def scenario() -> None:
        await init_topics(kafka_broker, prefix=kafka_prefix, partitions=1, replication=1)
        goal = GoalSubmitted(
            task_id="t-read", seq=1, goal="g", workflow=WorkflowRef(name="deliveries")
        )
        async with KafkaEventLog(kafka_broker, prefix=kafka_prefix) as log:
            await log.append([goal])
            producer = transactional_producer(kafka_broker, f"{kafka_prefix}-aborting")
            await producer.start()
            try:
                await producer.begin_transaction()
                done = TaskCompleted(
                    task_id="t-read", seq=2, result="never", causation_id=goal.event_id
                )
                batch = log._build_batch(producer, log.guard([done]))
                await (await producer.send_batch(batch, log.topic, partition=0))
                await producer.abort_transaction()
            finally:
                await producer.stop()
        stored = _events(await _records(kafka_broker, log.topic, "read_uncommitted", 1))
        assert [e.type for e in stored] == ["goal_submitted", "task_completed"]

    asyncio.run(scenario())
    conn = ("--brokers", kafka_broker, "--prefix", kafka_prefix)
    code, out, err = main_cli("kafka", "events", "t-read", *conn)
    assert code == 0, err
    assert "goal_submitted" in out and "task_completed" not in out, out
    code, out, err = main_cli("kafka", "status", "t-read", *conn, "--json")
    assert code == 0, err
    assert '"never"' not in out and "completed" not in out, out


async def test_records_handed_out_during_a_rebalance_are_fetched_again(
    kafka_broker: str, kafka_prefix: str, tmp_path: Path
) -> None:
    """aiokafka may hand out a new assignment's records before ``on_partitions_assigned``
    has finished (an exactly-once worker is still opening its lanes): the worker gives them
    back (the consumer seeks to them) and they come again once it is ready, instead of
    being skipped (the bug that stalled a SIGKILLed worker's tasks)."""
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    async with KafkaEventLog(kafka_broker, prefix=kafka_prefix) as log:
        for n in range(3):
            goal = GoalSubmitted(
                task_id=f"t-again-{n}", seq=1, goal="g", workflow=WorkflowRef(name="other")
            )
            await log.append([goal])
    settings = Settings(home=tmp_path)
    runtime = build_runtime(load_workflow(FIXTURE, settings=settings), settings)
    config = WorkerConfig(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=50)
    core = WorkerCore(runtime, config, out=io.StringIO())
    await core.start()
    worker = GroupWorker(core, config)
    events = TopicPartition(core.layout.events, 0)
    worker.consumer.subscribe([core.layout.goals, core.layout.events], listener=worker)
    await worker.consumer.start()
    try:
        async with asyncio.timeout(30):
            await worker.ready.wait()
            worker.ready.clear()  # as at the start of a rebalance
            handed: dict[TopicPartition, list[Any]] = {}
            while events not in handed:
                handed = await worker.consumer.getmany(timeout_ms=200)
            assert [m.offset for m in handed[events]] == [0, 1, 2]
            worker._give_back(handed)
            assert await worker.consumer.position(events) == 0
            worker.ready.set()
            again: dict[TopicPartition, list[Any]] = {}
            while events not in again:
                again = await worker.consumer.getmany(timeout_ms=200)
        assert [m.offset for m in again[events]] == [0, 1, 2]
    finally:
        await worker.consumer.stop()
        await core.shutdown()
