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
from agentledger.testing import run_goal
from tests.support.console import start_console
from tests.support.phoenix import Phoenix

FIXTURES = Path(__file__).parent.parent / "fixtures" / "console"
sys.path.insert(0, str(FIXTURES))
from console_model import respond  # noqa: E402

pytestmark = pytest.mark.integration


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


async def put_a_finished_task_on_kafka(bootstrap: str, prefix: str) -> tuple[str, int]:
    result = await run_goal(load_workflow(FIXTURES / "workflow.yaml"), ScriptedModel(respond), "x")
    await init_topics(bootstrap, prefix, partitions=2)
    async with KafkaEventLog(bootstrap, prefix=prefix, fetch_max_wait_ms=50) as log:
        await log.append(result.events)
    return result.task_id, len(result.events)


def test_console_and_otel_export_read_the_kafka_log(
    kafka_broker: str, kafka_prefix: str, tmp_path: Path, phoenix: Phoenix
) -> None:
    task_id, count = asyncio.run(put_a_finished_task_on_kafka(kafka_broker, kafka_prefix))
    with start_console(tmp_path, "--brokers", kafka_broker, "--prefix", kafka_prefix) as console:
        deadline = time.monotonic() + 30
        runs: list[dict[str, Any]] = []
        while not runs:
            assert time.monotonic() < deadline, "the console never listed the Kafka task"
            runs = get(console.url + "/api/runs")["runs"]
            if not runs:
                time.sleep(0.1)
        assert [(r["task_id"], r["status"], r["workflow"]) for r in runs] == [
            (task_id, "completed", "console-demo")
        ]
        view = get(f"{console.url}/api/runs/{task_id}")
        assert len(view["timeline"]) == count
        assert {n["id"]: n["status"] for n in view["dag"]["nodes"]} == {
            "_plan": "completed",
            "gather": "completed",
            "write": "completed",
        }
        assert {(e["source"], e["target"]) for e in view["dag"]["edges"]} == {("gather", "write")}

    project = f"k-{uuid.uuid4().hex[:8]}"
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "otel",
            "export",
            task_id[:12],
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
