"""A shadow run on the real broker: a second consumer group mirrors the primary's goals to
a shadow prefix, where workers of the candidate run them with tool results taken from the
primary's events (so no side effect runs twice); `shadow compare` and `eval report`
compare the two."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentledger.schemas import TERMINAL_TYPES, Event
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_runner import submit_goal
from agentledger.streams.log import Recorded
from tests.support.example_runs import cli

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parent.parent / "fixtures" / "deliveries" / "workflow.yaml"


def start(args: list[str], home: Path, name: str) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AGENTLEDGER_HOME": str(home), "DELIVERIES_MODEL_DELAY": "0"}
    with (home / f"{name}.out").open("wb") as out, (home / f"{name}.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "agentledger.cli", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in started:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


async def read(bootstrap: str, prefix: str, task_id: str) -> list[Event]:
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        return [e.event for e in await log.read_task(task_id) if isinstance(e, Recorded)]


def wait_ended(
    bootstrap: str,
    prefix: str,
    task_id: str,
    procs: list[subprocess.Popen[bytes]],
    homes: list[Path],
) -> list[Event]:
    deadline = time.monotonic() + 90
    while True:
        events = asyncio.run(read(bootstrap, prefix, task_id))
        if any(e.type in TERMINAL_TYPES for e in events):
            return events
        dead = [p.args for p in procs if p.poll() is not None]
        logs = "\n".join(f.read_text()[-2000:] for h in homes for f in sorted(h.glob("*.err")))
        assert not dead, f"{dead} exited:\n{logs}"
        assert time.monotonic() < deadline, f"task {task_id} under {prefix} did not end:\n{logs}"
        time.sleep(0.2)


def deliveries(home: Path) -> list[str]:
    path = home / "sandbox" / "deliveries.log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_shadow_run_on_the_real_broker(
    kafka_broker: str,
    kafka_prefix: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shadow = f"{kafka_prefix}-shadow"
    primary_home, shadow_home = tmp_path / "primary", tmp_path / "shadow"
    connect = ["--brokers", kafka_broker]
    code, _, err = cli("kafka", "init", *connect, "--prefix", kafka_prefix, "--partitions", "2")
    assert code == 0, err
    fast = ["--session-timeout", "3", "--fetch-wait-ms", "50"]
    processes.append(
        start(
            ["worker", str(FIXTURE), *connect, "--prefix", kafka_prefix, *fast],
            primary_home,
            "primary",
        )
    )
    processes.append(
        start(
            ["shadow", str(FIXTURE), *connect, "--prefix", kafka_prefix, "--shadow-prefix", shadow,
             "--partitions", "2", "--model", "reporter=candidate-model", *fast],
            shadow_home,
            "shadow",
        )
    )  # fmt: skip
    tasks = [
        asyncio.run(submit_goal(kafka_broker, goal, workflow=FIXTURE, prefix=kafka_prefix))
        for goal in ("deliver three parcels", "deliver three more")
    ]
    homes = [primary_home, shadow_home]
    for task_id in tasks:
        primary = wait_ended(kafka_broker, kafka_prefix, task_id, processes, homes)
        mirrored = wait_ended(kafka_broker, shadow, task_id, processes, homes)
        assert primary[-1].type == mirrored[-1].type == "task_completed"
        assert mirrored[0].submitted_by == f"shadow:{kafka_prefix}"  # type: ignore[union-attr]

        # the shadow's deliveries were answered with the primary's results, not run
        def results(events: list[Event]) -> list[str]:
            return sorted(
                json.dumps(getattr(e, "result", None), sort_keys=True)
                for e in events
                if e.type == "tool_call_completed"
            )

        assert [e for e in mirrored if e.type == "tool_call_failed"] == []
        assert results(mirrored) == results(primary) and len(results(primary)) == 3
        models = {
            getattr(e, "model", None)
            for e in mirrored
            if e.type == "llm_call_completed" and e.agent == "reporter"
        }
        assert models == {"candidate-model"}
    assert len(deliveries(primary_home)) == 6  # the primary delivered each parcel once
    assert deliveries(shadow_home) == []  # the shadow ran no side effect at all

    # the primary's tasks verify straight from Kafka, with the primary's vault
    monkeypatch.setenv("AGENTLEDGER_HOME", str(primary_home))
    code, out, err = cli("verify", tasks[0], *connect, "--prefix", kafka_prefix)
    assert code == 0 and f"task {tasks[0]}: ok" in out, err

    ledger = str(tmp_path / "compare.db")
    code, out, err = cli(
        "--db",
        ledger,
        "shadow",
        "compare",
        *connect,
        "--prefix",
        kafka_prefix,
        "--shadow-prefix",
        shadow,
    )
    assert code == 0, err + out
    run_id = out.strip().splitlines()[-1].split()[-1]
    code, out, err = cli("--db", ledger, "eval", "report", run_id, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["mode"] == "shadow" and report["runs"] == {"baseline": 2, "candidate": 2}
    assert report["pass_rate"]["baseline"] == report["pass_rate"]["candidate"] == 1.0
    assert sorted(c["case_id"] for c in report["cases"]) == sorted(tasks)
