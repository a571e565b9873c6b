"""The distributed shape: the console and the OTel exporter read a task from Kafka topics."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from agentledger.agents.workflow import load_workflow
from agentledger.cli import main
from agentledger.llm import ScriptedModel
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_topics import init_topics
from agentledger.streams.log import Recorded
from agentledger.testing import run_goal
from tests.support.console import start_console
from tests.support.phoenix import Phoenix

FIXTURES = Path(__file__).parent.parent / "fixtures" / "console"
APPROVALS = FIXTURES.parent / "approvals"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(APPROVALS))
from approvals_model import respond as approvals_respond  # noqa: E402
from console_model import respond  # noqa: E402

pytestmark = pytest.mark.integration


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


async def put_tasks_on_kafka(bootstrap: str, prefix: str) -> tuple[str, int, str, str]:
    """A finished task, and one paused for an approval: (id, events, paused id, approval)."""
    result = await run_goal(load_workflow(FIXTURES / "workflow.yaml"), ScriptedModel(respond), "x")
    paused = await run_goal(
        load_workflow(APPROVALS / "workflow.yaml"), ScriptedModel(approvals_respond), "wipe"
    )
    assert paused.state.status == "running" and paused.state.pending_approvals
    await init_topics(bootstrap, prefix, partitions=2)
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        await log.append(result.events)
        await log.append(paused.events)
    approval = paused.state.pending_approvals[0].id
    return result.task_id, len(result.events), paused.task_id, approval


async def unstamped_decisions(bootstrap: str, prefix: str, task_id: str) -> list[Any]:
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        entries = await log.read_task(task_id, unstamped=True)
    return [e.event for e in entries if isinstance(e, Recorded) and e.event.seq == 0]


def test_console_and_otel_export_read_the_kafka_log(
    kafka_broker: str, kafka_prefix: str, tmp_path: Path, phoenix: Phoenix
) -> None:
    task_id, count, paused_id, approval = asyncio.run(
        put_tasks_on_kafka(kafka_broker, kafka_prefix)
    )
    with start_console(tmp_path, "--brokers", kafka_broker, "--prefix", kafka_prefix) as console:
        deadline = time.monotonic() + 30
        runs: list[dict[str, Any]] = []
        while len(runs) < 2:
            assert time.monotonic() < deadline, "the console never listed the Kafka tasks"
            runs = get(console.url + "/api/runs")["runs"]
            if len(runs) < 2:
                time.sleep(0.1)
        assert {(r["task_id"], r["status"], r["workflow"]) for r in runs} == {
            (task_id, "completed", "console-demo"),
            (paused_id, "running", "maintenance"),
        }
        view = get(f"{console.url}/api/runs/{task_id}")
        assert len(view["timeline"]) == count
        assert {n["id"]: n["status"] for n in view["dag"]["nodes"]} == {
            "_plan": "completed",
            "gather": "completed",
            "write": "completed",
        }
        assert {(e["source"], e["target"]) for e in view["dag"]["edges"]} == {("gather", "write")}

        # a decision from the console is produced unstamped for the task's worker, as
        # `agentledger approve --brokers` does
        inbox = get(console.url + "/api/approvals")["approvals"]
        assert [(a["approval_id"], a["tool"]) for a in inbox] == [(approval, "wipe_table")]
        page = urllib.request.urlopen(console.url + "/", timeout=10).read().decode()
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        req = urllib.request.Request(
            f"{console.url}/api/approvals/{approval}",
            data=json.dumps({"decision": "approve", "note": "ok from the console"}).encode(),
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            message = json.loads(r.read())["message"]
        assert f"approval {approval} granted" in message and "worker" in message
        sent = asyncio.run(unstamped_decisions(kafka_broker, kafka_prefix, paused_id))
        assert [(e.type, e.approval_id, e.note) for e in sent] == [
            ("approval_granted", approval, "ok from the console")
        ]

    project = f"k-{uuid.uuid4().hex[:8]}"
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "otel",
            "export",
            task_id[:20],  # past the 12 hex digits of the ms timestamp: unique, still a prefix
            "--brokers",
            kafka_broker,
            "--prefix",
            kafka_prefix,
            "--endpoint",
            phoenix.traces_endpoint,
            "--resource",
            f"openinference.project.name={project}",
        ],
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    assert f"exported 9 spans of task {task_id}" in out.getvalue()
    names = sorted(s["name"] for s in phoenix.wait_spans(project, 9))
    assert names.count("chat scripted") == 4 and "invoke_workflow console-demo" in names
