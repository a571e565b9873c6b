"""The distributed worker as a process, and the names callers import from one place.

The worker is three concepts, each in its module:

- ``kafka_worker``: ``WorkerCore``, what a worker does with each record (tasks, stamping,
  acknowledgements, rebalances, dead letters, broker health), its clients injected;
- ``kafka_group``: the aiokafka consumer group on the worker's own loop that delivers
  records to it, with the offset rules (the default; ``kafka_faust``: the same on faust,
  with its two patches of faust internals, ``--consumer faust``);
- ``kafka_submit``: the client side, putting goals on the goals topic.

Example::

    from agentledger.streams.kafka_runner import WorkerConfig, run_worker, submit_goal

    run_worker(load_workflow("flow.yaml"), Settings(), WorkerConfig("127.0.0.1:9092"))
    task_id = await submit_goal("127.0.0.1:9092", "Write a brief", workflow="flow.yaml")
"""

from __future__ import annotations

from typing import TextIO

from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.settings import Settings
from agentledger.streams.kafka_submit import submit_goal, workflow_ref
from agentledger.streams.kafka_topics import require_layout as check_topics
from agentledger.streams.kafka_worker import (
    EXIT_BROKER_LOST,
    WorkerClients,
    WorkerConfig,
    WorkerCore,
    kafka_worker_clients,
    worker_group,
)

__all__ = [
    "EXIT_BROKER_LOST",
    "WorkerClients",
    "WorkerConfig",
    "WorkerCore",
    "check_topics",
    "kafka_worker_clients",
    "run_worker",
    "submit_goal",
    "worker_group",
    "workflow_ref",
]


def run_worker(
    workflow: Workflow,
    settings: Settings,
    config: WorkerConfig,
    *,
    out: TextIO | None = None,
    runtime: Runtime | None = None,
) -> int:
    """Run a worker until SIGTERM/SIGINT; return its exit code (see ``kafka_group``, or
    ``kafka_faust`` with ``config.consumer == "faust"``)."""
    if config.consumer == "aiokafka" or config.exactly_once:  # exactly-once: aiokafka only
        from agentledger.streams.kafka_group import run_worker as run_on_group

        return run_on_group(workflow, settings, config, out=out, runtime=runtime)
    from agentledger.streams.kafka_faust import run_worker as run_on_faust

    return run_on_faust(workflow, settings, config, out=out, runtime=runtime)
