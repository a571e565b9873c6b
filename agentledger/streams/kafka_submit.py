"""The submit (client) side of the distributed shape: putting goals on ``<prefix>.goals``.

A goal is a ``goal_submitted`` event keyed by its task id; a worker of the workflow makes it
seq 1 of the task on the events topic (see ``kafka_worker``).

Example::

    from agentledger.streams.kafka_submit import submit_goal

    task_id = await submit_goal("127.0.0.1:9092", "Write a brief", workflow="flow.yaml")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aiokafka.errors import KafkaError
from pydantic import JsonValue

from agentledger.errors import EventLogError
from agentledger.schemas import GoalSubmitted, WorkflowRef, new_event_id
from agentledger.schemas.codec import encode
from agentledger.settings import Settings
from agentledger.streams.kafka import event_headers
from agentledger.streams.kafka_clients import event_producer
from agentledger.streams.kafka_topics import DEFAULT_PREFIX, TopicLayout, require_topic
from agentledger.streams.write_guard import WriteGuard, settings_guard


def workflow_ref(workflow: str | Path, settings: Settings | None = None) -> WorkflowRef:
    """A workflow file (loaded, so name and digest are exact) or a bare workflow name."""
    path = Path(workflow)
    if path.suffix.lower() in (".yaml", ".yml", ".toml") or path.is_file():
        from agentledger.agents.workflow import load_workflow

        wf = load_workflow(path, settings=settings)
        return WorkflowRef(name=wf.name, path=str(wf.source or path), digest=wf.digest or None)
    return WorkflowRef(name=str(workflow))


async def submit_goal(
    bootstrap: str,
    goal: str,
    *,
    workflow: str | Path | WorkflowRef,
    prefix: str = DEFAULT_PREFIX,
    inputs: Mapping[str, JsonValue] | None = None,
    task_id: str | None = None,
    submitted_by: str | None = None,
    request_timeout_s: float = 30.0,
    guard: WriteGuard | None = None,
) -> str:
    """Put a goal on ``<prefix>.goals`` for the workers; return the new task's id.

    ``workflow`` is a workflow file, a workflow name, or a WorkflowRef. The goal becomes
    seq 1 of the task once a worker takes it (submitting the same task id twice starts
    one task). It is masked before it is produced (``guard``, default: the settings'
    vault), so the goals topic holds no raw value either; a tool that may receive a raw
    value gets it only from a worker that shares that vault.
    """
    ref = workflow if isinstance(workflow, WorkflowRef) else workflow_ref(workflow)
    layout = TopicLayout(prefix)
    await require_topic(bootstrap, layout.goals, prefix=prefix, timeout_s=request_timeout_s)
    task_id = task_id or new_event_id()
    event = GoalSubmitted(
        task_id=task_id,
        seq=1,
        correlation_id=task_id,
        goal=goal,
        workflow=ref,
        inputs=dict(inputs or {}),
        submitted_by=submitted_by,
    )
    (masked,) = (guard if guard is not None else settings_guard())([event])
    headers = event_headers(masked)
    producer = event_producer(
        bootstrap,
        client_id="agentledger-submit",
        request_timeout_ms=int(request_timeout_s * 1000),
    )
    try:
        await producer.start()
        await producer.send_and_wait(
            layout.goals, value=encode(masked), key=task_id.encode(), headers=headers
        )
    except KafkaError as exc:
        raise EventLogError(f"submitting a goal to {layout.goals} failed: {exc}") from exc
    finally:
        await producer.stop()
    return task_id
