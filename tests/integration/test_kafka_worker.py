"""Distributed workers against a real broker: `agentledger worker` processes sharing one
consumer group run the deliveries workflow end to end, survive a SIGKILL of one of them
without repeating a side effect or losing an event, and park bad input on the DLQ while
they keep working."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agentledger.schemas import Event, GoalSubmitted, TaskCancelled, WorkflowRef
from agentledger.schemas.codec import encode
from agentledger.streams import Recorded
from agentledger.streams.kafka import KafkaEventLog, partition_for_key
from agentledger.streams.kafka_dlq import DeadLetter, read_dead_letters
from agentledger.streams.kafka_runner import submit_goal
from agentledger.streams.kafka_topics import TopicLayout
from tests.support.kafka_broker import running_broker

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "deliveries" / "workflow.yaml"
PARTITIONS = 4
SESSION_TIMEOUT = "3"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "agentledger.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"agentledger {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


@dataclass
class Worker:
    """One `agentledger worker` subprocess; its output goes to files we can poll."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.stdout.read_text() if self.stdout.exists() else ""

    def events_partitions(self) -> set[int] | None:
        """The events partitions of its latest assignment (None before the first)."""
        found = re.findall(r"worker assigned: .* events=\[([\d,]*)\]", self.output())
        return {int(p) for p in found[-1].split(",") if p} if found else None

    def describe(self) -> str:
        err = self.stderr.read_text() if self.stderr.exists() else ""
        return f"worker {self.pid} stdout:\n{self.output()}\nstderr:\n{err[-3000:]}"


@dataclass
class Cluster:
    bootstrap: str
    prefix: str
    home: Path
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    worker_args: tuple[str, ...] = ()

    @property
    def layout(self) -> TopicLayout:
        return TopicLayout(self.prefix)

    def start_worker(self, index: int, *, revoke_grace: str = "2") -> Worker:
        out, err = self.home / f"worker{index}.out", self.home / f"worker{index}.err"
        with out.open("wb") as out_fh, err.open("wb") as err_fh:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agentledger.cli",
                    "worker",
                    str(FIXTURE),
                    "--brokers",
                    self.bootstrap,
                    "--prefix",
                    self.prefix,
                    "--session-timeout",
                    SESSION_TIMEOUT,
                    "--fetch-wait-ms",
                    "50",
                    "--revoke-grace",
                    revoke_grace,
                    "--shutdown-timeout",
                    "10",
                    *self.worker_args,
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out_fh,
                stderr=err_fh,
            )
        worker = Worker(process, out, err)
        self.workers.append(worker)
        return worker

    def wait_balanced(self) -> None:
        """Until every live worker holds events partitions and together they hold all."""

        def balanced() -> bool:
            alive = [w for w in self.workers if w.process.poll() is None]
            for w in self.workers:
                assert w.process.poll() is None or w not in alive, w.describe()
            held = [w.events_partitions() for w in alive]
            if any(not h for h in held):
                return False
            union = set().union(*(h or set() for h in held))
            return union == set(range(PARTITIONS)) and sum(len(h or ()) for h in held) == PARTITIONS

        wait_for(balanced, 60, "the workers to share the partitions\n" + self.describe())

    def assert_alive(self) -> None:
        for w in self.workers:
            assert w.process.poll() is None, w.describe()

    def describe(self) -> str:
        return "\n".join(w.describe() for w in self.workers)

    def stop(self) -> None:
        """SIGTERM every live worker and reap all of them."""
        for w in self.workers:
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait(timeout=10)

    def task_events(self, task_id: str) -> list[Event]:
        return asyncio.run(_read_task(self.bootstrap, self.prefix, task_id))

    def dead_letters(self) -> list[DeadLetter]:
        return asyncio.run(read_dead_letters(self.bootstrap, self.layout.dlq, fetch_max_wait_ms=50))

    def wait_terminal(self, task_id: str, timeout: float = 60) -> list[Event]:
        def terminal() -> list[Event] | None:
            self.assert_alive_or_killed()
            events = self.task_events(task_id)
            ended = any(e.type in ("task_completed", "task_failed") for e in events)
            return events if ended else None

        return wait_for(terminal, timeout, f"task {task_id} to end\n{self.describe()}")

    def assert_alive_or_killed(self) -> None:
        for w in self.workers:
            if w.pid not in self.killed:
                assert w.process.poll() is None, w.describe()


async def _read_task(bootstrap: str, prefix: str, task_id: str) -> list[Event]:
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        return [e.event for e in await log.read_task(task_id) if isinstance(e, Recorded)]


@contextlib.contextmanager
def running_cluster(
    bootstrap: str,
    home: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    revoke_grace: str = "2",
    worker_args: tuple[str, ...] = (),
) -> Iterator[Cluster]:
    """Topics under a fresh prefix and ``workers`` worker processes sharing them."""
    home.mkdir(parents=True, exist_ok=True)
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    full_env = {
        **os.environ,
        "AGENTLEDGER_HOME": str(home),
        "AGENTLEDGER_BROKERS": bootstrap,
        "AGENTLEDGER_PREFIX": prefix,
        **(env or {}),
    }
    cluster = Cluster(bootstrap, prefix, home, full_env, worker_args=worker_args)
    out = cli("kafka", "init", "--partitions", str(PARTITIONS), env=full_env)
    assert f"{prefix}.events" in out
    try:
        for i in range(workers):
            cluster.start_worker(i, revoke_grace=revoke_grace)
        cluster.wait_balanced()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def shared(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers for the tests that do not kill one; checks their graceful stop."""
    home = tmp_path_factory.mktemp("kafka-workers")
    with running_cluster(kafka_broker, home, env={"DELIVERIES_MODEL_DELAY": "0"}) as cluster:
        yield cluster
    for w in cluster.workers:
        assert w.process.returncode == 0, w.describe()
        assert "worker stopped:" in w.output(), w.describe()


def executions(home: Path) -> Counter[str]:
    """How often each idempotency key's delivery ran (one line per execution)."""
    log = home / "sandbox" / "deliveries.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[0] for line in lines)


def assert_well_formed(events: list[Event]) -> None:
    """Seq contiguous from 1, each event once, every tool request with exactly one outcome."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.event_id for e in events}) == len(events)
    requested = [e.idempotency_key for e in events if e.type == "tool_call_requested"]
    outcomes = [
        e.idempotency_key for e in events if e.type in ("tool_call_completed", "tool_call_failed")
    ]
    assert len(requested) == 3 and sorted(requested) == sorted(outcomes)


def test_two_workers_run_a_submitted_task_to_completion(shared: Cluster) -> None:
    task_id = cli(
        "submit", "--goal", "deliver three parcels", "--workflow", str(FIXTURE), env=shared.env
    ).strip()
    events = shared.wait_terminal(task_id)
    assert events[0].type == "goal_submitted" and events[0].seq == 1
    assert events[-1].type == "task_completed", [e.type for e in events]
    assert events[-1].result == "delivered: p1, p2, p3"
    assert_well_formed(events)
    assert sum(executions(shared.home).values()) >= 3
    assert all(n == 1 for n in executions(shared.home).values())

    status = orjson.loads(cli("kafka", "status", task_id, "--json", env=shared.env))
    assert status["status"] == "completed" and status["events"] == len(events)

    # The same goal delivered again starts nothing new. A later goal on the same goals
    # partition is taken after it, so once that one has run the duplicate was seen.
    again = asyncio.run(
        submit_goal(
            shared.bootstrap, "again", workflow="deliveries", prefix=shared.prefix, task_id=task_id
        )
    )
    assert again == task_id
    partition = partition_for_key(task_id.encode(), PARTITIONS)
    probe_id = next(
        t
        for t in (uuid.uuid4().hex for _ in range(1000))
        if partition_for_key(t.encode(), PARTITIONS) == partition
    )
    asyncio.run(
        submit_goal(
            shared.bootstrap, "deliver", workflow=FIXTURE, prefix=shared.prefix, task_id=probe_id
        )
    )
    shared.wait_terminal(probe_id)
    assert len(shared.task_events(task_id)) == len(events)


def test_bad_records_are_dead_lettered_and_the_workers_keep_going(shared: Cluster) -> None:
    layout = shared.layout

    async def produce_bad() -> str:
        producer = AIOKafkaProducer(bootstrap_servers=shared.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(layout.events, b"\x00\xffgarbage", key=b"junk-bytes")
            unknown = orjson.dumps({"type": "made_up", "task_id": "junk-type", "seq": 1})
            await producer.send_and_wait(layout.events, unknown, key=b"junk-type")
            orphan = TaskCancelled(task_id="junk-orphan", seq=1, reason="no goal before me")
            await producer.send_and_wait(layout.events, encode(orphan), key=b"junk-orphan")
            await producer.send_and_wait(layout.goals, b"{not a goal", key=b"junk-goal")
        finally:
            await producer.stop()
        return await submit_goal(
            shared.bootstrap, "deliver", workflow="no-such-workflow", prefix=shared.prefix
        )

    foreign = asyncio.run(produce_bad())
    task_id = asyncio.run(
        submit_goal(shared.bootstrap, "deliver after junk", workflow=FIXTURE, prefix=shared.prefix)
    )
    events = shared.wait_terminal(task_id)
    assert events[-1].type == "task_completed"
    assert_well_formed(events)

    def five_letters() -> list[DeadLetter] | None:
        letters = shared.dead_letters()
        return letters if len(letters) >= 5 else None

    letters = wait_for(five_letters, 30, "five dead letters\n" + shared.describe())
    by_key = {(x.key or b"").decode(): x for x in letters}
    assert len(letters) == 5, [(x.key, x.reason) for x in letters]
    assert "not JSON" in by_key["junk-bytes"].reason
    assert by_key["junk-bytes"].value == b"\x00\xffgarbage"
    assert by_key["junk-bytes"].source_topic == layout.events
    assert "unknown event type 'made_up'" in by_key["junk-type"].reason
    assert "no goal_submitted" in by_key["junk-orphan"].reason
    assert "invalid goal" in by_key["junk-goal"].reason
    assert by_key["junk-goal"].source_topic == layout.goals
    assert "no-such-workflow" in by_key[foreign].reason
    assert shared.task_events(foreign) == []  # a goal no worker runs never became a task
    shared.assert_alive()

    listed = [
        orjson.loads(line) for line in cli("dlq", "list", "--json", env=shared.env).splitlines()
    ]
    assert sorted(row["key"] for row in listed) == sorted(by_key)
    # Each dead letter is one warning line on stderr, never a logging-error traceback.
    err = "".join(w.stderr.read_text() for w in shared.workers)
    assert "Logging error" not in err and "Traceback" not in err, err[-3000:]
    warned = [line for line in err.splitlines() if "dead letter from" in line]
    assert len(warned) == 5, err[-3000:]
    assert any("unknown event type 'made_up'" in line for line in warned), warned


@pytest.mark.parametrize("consumer", ["faust", "aiokafka"])
def test_sigkill_of_a_worker_mid_task_loses_nothing_and_repeats_no_delivery(
    kafka_broker: str, tmp_path: Path, consumer: str
) -> None:
    env = {"DELIVERIES_MODEL_DELAY": "0.8"}
    args = ("--consumer", consumer)
    with running_cluster(kafka_broker, tmp_path, env=env, worker_args=args) as cluster:
        task_id = asyncio.run(
            submit_goal(cluster.bootstrap, "deliver", workflow=FIXTURE, prefix=cluster.prefix)
        )
        log_path = tmp_path / "sandbox" / "deliveries.log"

        def first_delivery_pid() -> int | None:
            cluster.assert_alive()
            text = log_path.read_text() if log_path.exists() else ""
            return int(text.splitlines()[0].split()[-1]) if text.strip() else None

        pid = wait_for(first_delivery_pid, 60, "a delivery\n" + cluster.describe())
        victim = next(w for w in cluster.workers if w.pid == pid)

        def delivery_recorded() -> bool:
            return any(e.type == "tool_call_completed" for e in cluster.task_events(task_id))

        wait_for(delivery_recorded, 30, "a recorded delivery")
        victim.process.send_signal(signal.SIGKILL)
        cluster.killed.add(victim.pid)
        victim.process.wait(timeout=10)
        assert victim.process.returncode == -signal.SIGKILL
        before = cluster.task_events(task_id)
        assert not any(e.type == "task_completed" for e in before), "killed too late"

        after = cluster.wait_terminal(task_id, timeout=60)
        survivor = next(w for w in cluster.workers if w is not victim)
        assert survivor.process.poll() is None, survivor.describe()

    assert after[-1].type == "task_completed", [e.type for e in after]
    assert after[-1].result == "delivered: p1, p2, p3"
    # nothing lost: what was in the log at the kill is still there, in order
    assert [e.event_id for e in after[: len(before)]] == [e.event_id for e in before]
    assert_well_formed(after)
    # no delivery twice, and every recorded (non-replayed) completion really ran
    ran = executions(tmp_path)
    assert ran and all(n == 1 for n in ran.values()), ran
    completed = {
        e.idempotency_key for e in after if e.type == "tool_call_completed" and not e.replayed
    }
    assert completed <= set(ran)


def test_commits_never_pass_a_record_whose_reactions_are_unfinished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust alone commits 12 with 10 committed, 10 unacknowledged and 11 acknowledged."""
    from faust.transport.consumer import Consumer
    from faust.types import TP
    from intervaltree import IntervalTree

    from agentledger.streams.kafka_faust import _guard_commits

    monkeypatch.setattr(Consumer, "_new_offset", Consumer._new_offset)
    monkeypatch.setattr(Consumer, "_agentledger_new_offset", None, raising=False)
    first = _guard_commits()
    tp = TP("t.events", 0)

    def new_offset(committed: int | None, acked: list[int], gap: IntervalTree) -> int | None:
        consumer = SimpleNamespace(
            _acked={tp: list(acked)},
            _acked_index={tp: set(acked)},
            _gap={tp: gap},
            _committed_offset={tp: committed},
        )
        return Consumer._new_offset(consumer, tp)

    assert new_offset(10, [11], IntervalTree()) is None
    assert new_offset(10, [10, 11], IntervalTree()) == 12
    assert new_offset(10, [11], IntervalTree.from_tuples([(10, 11)])) == 12  # a known gap
    assert new_offset(None, [6], IntervalTree()) is None  # start unknown: commit nothing
    first.seen(0, 5, "t.events")
    assert new_offset(None, [6], IntervalTree()) is None
    assert new_offset(None, [5, 6], IntervalTree()) == 7


@pytest.mark.parametrize("consumer", ["faust", "aiokafka"])
def test_workers_joining_and_leaving_mid_task_hand_tasks_over_cleanly(
    kafka_broker: str, tmp_path: Path, consumer: str
) -> None:
    """A join revokes partitions from a busy worker (a short grace cancels reactions in
    flight), then that worker leaves on SIGTERM; the tasks still end well formed, with no
    delivery run twice."""
    # After the first delivery, 8 s of model calls: time for a worker to start and join.
    env = {"DELIVERIES_MODEL_DELAY": "4"}
    args = ("--consumer", consumer)
    with running_cluster(
        kafka_broker, tmp_path, workers=1, env=env, revoke_grace="0.1", worker_args=args
    ) as cluster:
        task_ids = [
            asyncio.run(
                submit_goal(
                    cluster.bootstrap, f"deliver {i}", workflow=FIXTURE, prefix=cluster.prefix
                )
            )
            for i in range(2)
        ]
        log_path = tmp_path / "sandbox" / "deliveries.log"
        wait_for(
            lambda: log_path.exists() and log_path.read_text().strip(),
            60,
            "a delivery\n" + cluster.describe(),
        )
        cluster.start_worker(1)
        cluster.wait_balanced()
        # Then the first one leaves gracefully, mid-task: it finishes what it has in
        # flight (or cancels it after --shutdown-timeout) and the other takes over.
        first = cluster.workers[0]
        first.process.send_signal(signal.SIGTERM)
        cluster.killed.add(first.pid)
        assert first.process.wait(timeout=30) == 0, first.describe()
        assert "worker stopped:" in first.output()
        results = [cluster.wait_terminal(t) for t in task_ids]
        assert cluster.workers[1].process.poll() is None, cluster.describe()
        # the first worker's second assignment came while both tasks were still running
        finished = re.findall(
            r"worker assigned: .* tasks_finished=(\d+)", cluster.workers[0].output()
        )
        assert len(finished) >= 2 and finished[1] == "0", cluster.describe()

    for events in results:
        assert events[-1].type == "task_completed", [e.type for e in events]
        assert_well_formed(events)
    ran = executions(tmp_path)
    assert ran and all(n == 1 for n in ran.values()), ran


def main_cli(*argv: str) -> tuple[int, str, str]:
    """The CLI in-process."""
    from agentledger.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_against_kafka_views_tasks_and_redrives_dead_letters(shared: Cluster) -> None:
    conn = ("--brokers", shared.bootstrap, "--prefix", shared.prefix)
    task_id = asyncio.run(
        submit_goal(shared.bootstrap, "deliver", workflow=FIXTURE, prefix=shared.prefix)
    )
    events = shared.wait_terminal(task_id)

    code, out, err = main_cli("kafka", "events", task_id[:13], "--json", *conn)
    assert code == 0, err
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == [e.seq for e in events]
    code, out, err = main_cli("kafka", "events", task_id, "--follow", *conn)
    assert code == 0 and "task_completed" in out.splitlines()[-1], err
    code, out, err = main_cli("kafka", "replay", task_id, "--until", "7", *conn)
    assert code == 0 and "state as of seq 7" in out, err

    # Park a bad goal, list it, re-drive it: it comes back and is parked again.
    async def park() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=shared.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(shared.layout.goals, b"]", key=b"redrive-me")
        finally:
            await producer.stop()

    asyncio.run(park())

    def parked(count: int) -> Callable[[], list[DeadLetter] | None]:
        def check() -> list[DeadLetter] | None:
            mine = [x for x in shared.dead_letters() if x.key == b"redrive-me"]
            return mine if len(mine) >= count else None

        return check

    first = wait_for(parked(1), 30, "the bad goal on the DLQ")[0]
    code, out, err = main_cli("dlq", "list", *conn)
    assert code == 0 and "key=redrive-me" in out and "invalid goal" in out, err
    code, out, err = main_cli("dlq", "redrive", str(first.offset), *conn)
    assert code == 0 and f"re-drove {first.offset} to {shared.layout.goals}" in out, err
    again = wait_for(parked(2), 30, "the re-driven goal back on the DLQ")
    assert again[1].reason == first.reason and again[1].value == b"]"
    code, _, err = main_cli("dlq", "redrive", *conn)
    assert code == 2 and "--all" in err
    shared.assert_alive()


def test_cli_refuses_a_prefix_without_topics(kafka_broker: str) -> None:
    conn = ("--brokers", kafka_broker, "--prefix", f"none-{uuid.uuid4().hex[:8]}")
    code, _, err = main_cli("worker", str(FIXTURE), *conn)
    assert code == 2 and "agentledger kafka init" in err
    code, _, err = main_cli("submit", "--goal", "g", "--workflow", "deliveries", *conn)
    assert code == 2 and "agentledger kafka init" in err


def test_an_oversize_goal_is_parked_as_a_reference_and_its_partition_moves_on(
    shared: Cluster,
) -> None:
    """A 2 MB goal, from a producer and a topic whose limits were raised past ours, never
    blocks its partition: it is parked as a reference, and the next goal there completes."""
    layout = shared.layout
    big_id = f"big-{uuid.uuid4().hex[:8]}"
    partition = partition_for_key(big_id.encode(), PARTITIONS)
    n = 0
    while partition_for_key(f"after-big-{n}".encode(), PARTITIONS) != partition:
        n += 1
    next_id = f"after-big-{n}"
    limit = 4 * 1024 * 1024

    async def produce_big() -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=shared.bootstrap)
        await admin.start()
        try:  # an operator raising the goals topic's limit, as the issue found possible
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, layout.goals, {"max.message.bytes": str(limit)}
                    )
                ]
            )
        finally:
            await admin.close()
        goal = GoalSubmitted(
            task_id=big_id, seq=1, goal="deliver", workflow=WorkflowRef(name="deliveries")
        )
        # Another language's client need not know our field limits: 2 MB of input data.
        big = {**orjson.loads(encode(goal)), "inputs": {"blob": "x" * 2_000_000}}
        producer = AIOKafkaProducer(
            bootstrap_servers=shared.bootstrap, max_request_size=limit, acks="all"
        )
        await producer.start()
        try:
            await producer.send_and_wait(layout.goals, orjson.dumps(big), key=big_id.encode())
        finally:
            await producer.stop()

    asyncio.run(produce_big())
    asyncio.run(
        submit_goal(
            shared.bootstrap, "deliver", workflow=FIXTURE, prefix=shared.prefix, task_id=next_id
        )
    )
    events = shared.wait_terminal(next_id)
    assert events[-1].type == "task_completed"

    def parked() -> list[DeadLetter] | None:
        found = [x for x in shared.dead_letters() if x.key == big_id.encode()]
        return found or None

    (letter,) = wait_for(parked, 30, "the oversize goal on the DLQ\n" + shared.describe())
    assert letter.reference and letter.source_topic == layout.goals
    assert letter.source_partition == partition
    assert "oversize record" in letter.reason
    body = orjson.loads(letter.value or b"")
    assert body["reference"] is True and body["topic"] == layout.goals
    assert body["partition"] == partition and body["offset"] == letter.source_offset
    assert body["size"] > 2_000_000 and len(body["preview"]) <= 512
    assert len(letter.value or b"") < 4096
    assert shared.task_events(big_id) == []
    shared.assert_alive()
    code, _, err = main_cli(
        "dlq",
        "redrive",
        str(letter.offset),
        "--brokers",
        shared.bootstrap,
        "--prefix",
        shared.prefix,
    )
    assert code == 2 and "is a reference" in err


def test_a_lost_broker_makes_the_worker_degraded_then_exit() -> None:
    """Health says degraded (with reason and since when) within seconds of the broker's
    death, and the worker exits with code 4 after --broker-lost-exit, quietly: no logging
    tracebacks, no flood. A private broker, so the session's survives."""
    with tempfile.TemporaryDirectory() as home, running_broker() as broker:
        args = ("--broker-lost-exit", "6", "--health-interval", "300")
        with running_cluster(broker.bootstrap, Path(home), workers=1, worker_args=args) as cluster:
            worker = cluster.workers[0]
            assert "status=ok" in worker.output()
            broker.kill()
            killed_at = time.monotonic()
            line = wait_for(
                lambda: re.search(r"worker degraded: .*", worker.output()),
                10,
                "the degraded health line\n" + worker.describe(),
            ).group(0)
            noticed = time.monotonic() - killed_at
            assert noticed < 5, noticed
            assert re.search(r'status=degraded since=\d{4}-\d\d-\d\dT[\d:]+Z reason="broker', line)
            assert worker.process.wait(timeout=30) == 4, worker.describe()
            exited = time.monotonic() - killed_at
            cluster.killed.add(worker.pid)
        assert 5 < exited < 20, exited
        assert "worker exiting:" in worker.output()
        err = worker.stderr.read_text()
        assert "Logging error" not in err and "Traceback" not in err, err[-3000:]
        assert len(err) < 100_000, f"{len(err)} bytes of stderr in {exited:.0f} s"


def test_goals_from_librdkafka_clients_each_make_exactly_one_task(shared: Cluster) -> None:
    """confluent-kafka and kcat (both librdkafka, whose default partitioner is CRC32-based,
    not murmur2) submit goals as raw records; each becomes exactly one task, even when it
    lands on a goals partition other than its task's events partition."""
    import confluent_kafka

    layout = shared.layout

    def raw_goal(task_id: str) -> bytes:
        goal = GoalSubmitted(
            task_id=task_id, seq=1, goal="deliver", workflow=WorkflowRef(name="deliveries")
        )
        return encode(goal)

    def elsewhere(prefix: str) -> str:
        """A task id that librdkafka's CRC32 partitioner puts elsewhere than murmur2 does."""
        while True:
            task_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
            crc = zlib.crc32(task_id.encode()) % PARTITIONS
            if crc != partition_for_key(task_id.encode(), PARTITIONS):
                return task_id

    rdk_id = elsewhere("rdk")
    landed: list[int] = []
    producer = confluent_kafka.Producer({"bootstrap.servers": shared.bootstrap, "acks": "all"})
    producer.produce(
        layout.goals,
        value=raw_goal(rdk_id),
        key=rdk_id.encode(),
        headers=[("x-agentledger-type", b"goal_submitted")],
        on_delivery=lambda err, msg: landed.append(-1 if err else msg.partition()),
    )
    assert producer.flush(30) == 0
    assert landed == [zlib.crc32(rdk_id.encode()) % PARTITIONS]  # not murmur2's partition
    ids = [rdk_id]

    kcat_id = elsewhere("kcat")
    proc = subprocess.run(
        [
            "kcat",
            "-P",
            "-b",
            shared.bootstrap,
            "-t",
            layout.goals,
            "-k",
            kcat_id,
            "-H",
            "x-agentledger-type=goal_submitted",
        ],
        input=raw_goal(kcat_id) + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    ids.append(kcat_id)

    for task_id in ids:
        events = shared.wait_terminal(task_id)
        assert events[-1].type == "task_completed", [e.type for e in events]
        assert [e.type for e in events].count("goal_submitted") == 1
        assert_well_formed(events)
    shared.assert_alive()
