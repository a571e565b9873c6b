"""MCP tools on the Kafka worker: ``WorkerCore`` pins a new task's MCP tools (or adopts the
pins a rebuilt task recorded) before the task's first reaction, as ``EmbeddedRunner`` does.
The MCP server is the ``mcp`` SDK stdio server of ``tests.support.mcp_server``, run as a real
subprocess; the worker core runs over in-memory topics and on the session's Apache Kafka."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from agentledger.agents.workflow import load_workflow
from agentledger.llm import ScriptedModel
from agentledger.llm.scripted import call_tool, reply
from agentledger.schemas import Event, GoalSubmitted, WorkflowRef
from agentledger.schemas.mcp import McpToolsPinned
from agentledger.streams.kafka import KafkaEventLog, KafkaRecord
from agentledger.streams.kafka_clients import record_consumer
from agentledger.streams.kafka_memory import MemoryGroup, MemoryTopics
from agentledger.streams.kafka_runner import WorkerConfig, WorkerCore, submit_goal
from agentledger.streams.kafka_topics import TopicLayout, init_topics
from agentledger.testing import make_runtime, task_events

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.support.kafka_fixtures"]

ROOT = Path(__file__).resolve().parents[2]
REFUNDS = "Refunds are accepted within 30 days of delivery."

WORKFLOW = f"""
name: mcp-kafka-test
pattern: peer_to_peer
entry: agent
model: {{provider: scripted}}
mcp_servers:
  kb: {{command: [python, -m, tests.support.mcp_server, stdio], cwd: "{ROOT}"}}
tools:
  kb_lookup: {{mcp: kb/lookup, risk: read, side_effect: false}}
agents:
  agent:
    tools: [kb_lookup]
"""


def _workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW)
    return path


def _core(
    path: Path, config: WorkerConfig, clients: object = None, *, tasks: int = 1
) -> WorkerCore:
    turns = [call_tool("kb_lookup", topic="refunds"), reply("done")] * tasks  # one task at a time
    model = ScriptedModel({"agent": turns})
    runtime = make_runtime(load_workflow(path), model)
    return WorkerCore(runtime, config, clients, out=io.StringIO())  # type: ignore[arg-type]


def _check_completed_with_one_pin(events: list[Event]) -> McpToolsPinned:
    types = [e.type for e in events]
    assert types[-1] == "task_completed", types
    [pin] = [e for e in events if isinstance(e, McpToolsPinned)]
    assert (pin.server, pin.transport) == ("kb", "stdio")
    assert [(t.name, t.remote_name) for t in pin.tools] == [("kb_lookup", "lookup")]
    # pinned before the goal's first reaction asked the model for anything
    assert types.index("mcp_tools_pinned") < types.index("tool_call_requested")
    [done] = [e for e in events if e.type == "tool_call_completed"]
    assert done.result == REFUNDS
    assert not [e for e in events if e.type == "tool_call_rejected"]
    return pin


def _goal(task_id: str, name: str) -> GoalSubmitted:
    goal = GoalSubmitted(
        task_id=task_id, seq=1, goal="refund policy?", workflow=WorkflowRef(name=name)
    )
    return goal.model_copy(update={"correlation_id": task_id})


async def test_the_worker_core_pins_a_new_task_and_adopts_a_rebuilt_tasks_pins(
    tmp_path: Path,
) -> None:
    path = _workflow_file(tmp_path)
    topics = MemoryTopics("m", partitions=2)
    group = MemoryGroup(topics)
    log = topics.clients().log
    first = _core(path, WorkerConfig("memory", prefix="m"), topics.clients())
    await group.join(first)
    try:
        topics.produce_event(topics.layout.goals, _goal("t-new", "mcp-kafka-test"))
        await group.run_until_idle()
        pin = _check_completed_with_one_pin(await task_events(log, "t-new"))  # type: ignore[arg-type]
    finally:
        await group.leave(first)
        await first.shutdown()

    # A task whose goal and pins an earlier worker recorded before it died: a fresh worker
    # (its toolset holds no pins) rebuilds it from the log and must adopt them, not pin again.
    second = _core(path, WorkerConfig("memory", prefix="m"), topics.clients(), tasks=2)
    await group.join(second)
    try:
        goal = _goal("t-rebuilt", "mcp-kafka-test")
        recorded = pin.model_copy(
            update={"task_id": goal.task_id, "seq": 2, "correlation_id": goal.task_id}
        )
        topics.produce_event(topics.layout.events, goal)
        topics.produce_event(topics.layout.events, recorded)
        await group.run_until_idle()
        events = await task_events(log, "t-rebuilt")  # type: ignore[arg-type]
        assert _check_completed_with_one_pin(events).event_id == recorded.event_id
        # and a goal some writer appended without pins: pinned on rebuild, before dispatch
        topics.produce_event(topics.layout.events, _goal("t-unpinned", "mcp-kafka-test"))
        await group.run_until_idle()
        _check_completed_with_one_pin(await task_events(log, "t-unpinned"))  # type: ignore[arg-type]
    finally:
        await second.shutdown()


async def test_an_mcp_tool_runs_to_completion_on_the_kafka_worker(
    tmp_path: Path, kafka_broker: str, kafka_prefix: str
) -> None:
    path = _workflow_file(tmp_path)
    await init_topics(kafka_broker, kafka_prefix, partitions=1)
    layout = TopicLayout(kafka_prefix)
    core = _core(path, WorkerConfig(kafka_broker, prefix=kafka_prefix))
    await core.start()
    await core.on_assigned({layout.goals: {0}, layout.events: {0}})
    consumer = record_consumer(kafka_broker, auto_offset_reset="earliest", fetch_max_wait_ms=50)
    consumer.assign([TopicPartition(layout.goals, 0), TopicPartition(layout.events, 0)])
    await consumer.start()
    log = KafkaEventLog(kafka_broker, prefix=kafka_prefix, fetch_max_wait_ms=20)
    await log.start()
    try:
        task_id = await submit_goal(
            kafka_broker, "refund policy?", workflow=path, prefix=kafka_prefix
        )
        deadline = time.monotonic() + 60
        events: list[Event] = []
        while not events or not events[-1].type.startswith("task_"):
            assert time.monotonic() < deadline, [e.type for e in events]
            batches = await consumer.getmany(timeout_ms=100)
            for partition, messages in batches.items():
                for message in messages:
                    record = KafkaRecord.of(message)
                    if partition.topic == layout.goals:
                        await core.on_goal(record)
                    else:
                        await core.on_event(record)
            await asyncio.sleep(0)
            events = await task_events(log, task_id)
        _check_completed_with_one_pin(events)
    finally:
        await consumer.stop()
        await log.close()
        await core.shutdown()
