"""Shadow runs on live traffic: a candidate workflow on the primary's goals, no side effects.

The distributed shape, with nothing changed on the primary side:

* ``mirror_goals`` — a second consumer group on the primary's ``<prefix>.goals`` topic
  submits each goal again under the shadow prefix (same task id, the candidate's workflow,
  ``submitted_by: shadow:<prefix>``);
* the shadow workers are ordinary workers (``run_worker``) of the candidate workflow on
  the shadow prefix, so everything the candidate writes lands on ``<shadow>.events``;
* their tools are ``PrimaryToolResults``: a call is answered with the outcome the primary
  task recorded for the same tool and arguments, read from the primary's events topic
  (waiting for it while the primary runs). A side-effecting call the primary never made is
  refused; a read-only one runs once the primary task has ended without it.
* ``compare_shadow`` turns pairs of (primary, shadow) tasks into an eval run in a ledger,
  the primary as baseline and the shadow as candidate, so ``eval report RUN`` compares
  them like any other eval.

    agentledger shadow CANDIDATE.yaml --brokers B --prefix live --shadow-prefix live-shadow
    agentledger shadow compare --brokers B --prefix live --shadow-prefix live-shadow
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import JsonValue

from agentledger.agents.workflow import Workflow
from agentledger.errors import AgentLedgerError, ToolError
from agentledger.evaluation.case_run import CaseRun
from agentledger.evaluation.diff import RunFigures
from agentledger.evaluation.recording import answering_tool, replace_tools
from agentledger.evaluation.scorers import score_output
from agentledger.evaluation.suite import Case, ExactScorer
from agentledger.evaluation.tool_replay import tool_key
from agentledger.schemas import (
    TERMINAL_TYPES,
    EvalCaseCompleted,
    EvalRunCompleted,
    EvalRunStarted,
    Event,
    EventBase,
    GoalSubmitted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    WorkflowRef,
    new_event_id,
)
from agentledger.schemas.codec import decode
from agentledger.schemas.evaluation import Variant
from agentledger.streams.kafka import KafkaEventLog
from agentledger.streams.kafka_runner import submit_goal
from agentledger.streams.kafka_topics import TopicLayout
from agentledger.streams.log import EventLog, task_events
from agentledger.tools.registry import Tool, ToolContext

log = logging.getLogger(__name__)


def shadow_group(shadow_prefix: str) -> str:
    """The consumer group that mirrors the primary's goals."""
    return f"{TopicLayout(shadow_prefix).prefix}.shadow-goals"


class PrimaryToolResults:
    """A shadow worker's tools: answered from the primary task's events (see the module
    docstring). The shadow task has the primary task's id."""

    def __init__(
        self,
        bootstrap: str,
        primary_prefix: str,
        *,
        wait_s: float = 60.0,
        poll_s: float = 0.1,
    ) -> None:
        self.bootstrap = bootstrap
        self.primary_prefix = primary_prefix
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.answered = self.refused = self.ran = 0
        self._log: KafkaEventLog | None = None
        self._starting = asyncio.Lock()

    def workflow(self, workflow: Workflow) -> Workflow:
        return replace_tools(workflow, lambda t: answering_tool(t, self._answer))

    async def _primary(self) -> KafkaEventLog:
        async with self._starting:  # concurrent tool calls share one started reader
            if self._log is None:
                primary = KafkaEventLog(
                    self.bootstrap,
                    prefix=self.primary_prefix,
                    client_id="agentledger-shadow-tools",
                    isolation_level="read_committed",  # never an aborted tool result
                )
                await primary.start()
                self._log = primary
        return self._log

    async def close(self) -> None:
        if self._log is not None:
            await self._log.close()

    async def _answer(self, tool: Tool, ctx: ToolContext, arguments: dict[str, Any]) -> JsonValue:
        key = tool_key(tool, arguments)
        deadline = time.monotonic() + self.wait_s
        while True:
            events = await task_events(await self._primary(), ctx.task_id)
            outcome = _outcome(events, tool, key)
            if outcome is not None:
                self.answered += 1
                if isinstance(outcome, ToolCallFailed):
                    raise ToolError(outcome.message, kind=outcome.error_kind)
                return outcome.result
            ended = any(e.type in TERMINAL_TYPES for e in events)
            if ended or time.monotonic() > deadline:
                break
            await asyncio.sleep(self.poll_s)
        why = "the primary task ended without it" if ended else f"not seen in {self.wait_s:g} s"
        if tool.side_effect:
            self.refused += 1
            raise ToolError(
                f"shadow run: {tool.name!r} has side effects and the primary run has no result "
                f"for this call ({why}); it is not run",
                kind="side_effect_blocked",
            )
        self.ran += 1
        return await tool.run(arguments, ctx)


def _outcome(
    events: Sequence[Event], tool: Tool, key: tuple[str, str] | None
) -> ToolCallCompleted | ToolCallFailed | None:
    if key is None:
        return None
    wanted = {
        e.idempotency_key
        for e in events
        if isinstance(e, ToolCallRequested) and tool_key(tool, e.arguments) == key
    }
    for e in events:
        if isinstance(e, ToolCallCompleted | ToolCallFailed) and e.idempotency_key in wanted:
            return e
    return None


async def mirror_goals(
    bootstrap: str,
    primary_prefix: str,
    shadow_prefix: str,
    workflow: WorkflowRef,
    *,
    stop: threading.Event | asyncio.Event,
    poll_ms: int = 200,
) -> int:
    """Submit every goal of the primary again under the shadow prefix until ``stop``;
    return how many. Offsets are committed after each batch is submitted (at least once:
    a goal submitted twice still starts one shadow task)."""
    consumer = AIOKafkaConsumer(
        TopicLayout(primary_prefix).goals,
        bootstrap_servers=bootstrap,
        group_id=shadow_group(shadow_prefix),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        client_id="agentledger-shadow-mirror",
    )
    mirrored = 0
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=poll_ms)
            for records in batches.values():
                for record in records:
                    mirrored += await _mirror(
                        record.value, bootstrap, shadow_prefix, workflow, primary_prefix
                    )
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
    return mirrored


async def _mirror(
    value: bytes | None, bootstrap: str, shadow_prefix: str, workflow: WorkflowRef, primary: str
) -> int:
    try:
        goal = decode(value or b"")
    except ValueError as exc:  # the primary's workers dead-letter it; nothing to mirror
        log.warning("shadow: skipped an undecodable goal: %s", exc)
        return 0
    if not isinstance(goal, GoalSubmitted):
        return 0
    await submit_goal(
        bootstrap,
        goal.goal,
        workflow=workflow,
        prefix=shadow_prefix,
        inputs=goal.inputs,
        task_id=goal.task_id,
        submitted_by=f"shadow:{primary}",
    )
    return 1


@contextlib.contextmanager
def mirroring(
    bootstrap: str, primary_prefix: str, shadow_prefix: str, workflow: WorkflowRef
) -> Any:
    """``mirror_goals`` in a thread of its own while the block runs (the worker owns the
    main thread's event loop)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                asyncio.run(
                    mirror_goals(bootstrap, primary_prefix, shadow_prefix, workflow, stop=stop)
                )
            except (KafkaError, OSError, AgentLedgerError) as exc:  # the broker went away
                log.warning("shadow: mirroring goals failed (%s); retrying", exc)
                stop.wait(1.0)
            except Exception:  # never a silent death of the mirror: say why, then go on
                log.exception("shadow: mirroring goals failed; retrying")
                stop.wait(1.0)

    thread = threading.Thread(target=run, name="shadow-goal-mirror", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=10)


async def compare_shadow(
    primary: EventLog,
    shadow: EventLog,
    ledger: EventLog,
    *,
    task_ids: Sequence[str],
    primary_name: str,
    shadow_name: str,
    run_id: str | None = None,
    thresholds: dict[str, float] | None = None,
) -> str:
    """Record an eval run in ``ledger`` comparing each shadow task with its primary: the
    primary as baseline, the shadow as candidate, scored by whether the outputs agree."""
    run_id = run_id or new_event_id()
    scorer = ExactScorer(name="same_output", type="exact")
    out: list[EventBase] = [
        EvalRunStarted(
            task_id=run_id,
            suite=f"shadow {shadow_name} of {primary_name}",
            mode="shadow",
            cases=len(task_ids),
            repetitions=1,
            baseline=f"primary ({primary_name})",
            candidate=f"shadow ({shadow_name})",
            scorers=[scorer.name],
            thresholds=dict(thresholds or {}),
        )
    ]
    for task_id in task_ids:
        base, cand = await task_events(primary, task_id), await task_events(shadow, task_id)
        if not base or not cand:
            continue
        goal = next((e for e in base if isinstance(e, GoalSubmitted)), None)
        base_figures, cand_figures = RunFigures.of(base), RunFigures.of(cand)
        case = Case(id=task_id, goal=goal.goal if goal else "-", expected=base_figures.result)
        variants: list[tuple[Variant, RunFigures]] = [
            ("baseline", base_figures),
            ("candidate", cand_figures),
        ]
        for variant, figures in variants:
            run = CaseRun(run_id, task_id, variant, 0, figures)
            out.append(run.completed())
            result = await score_output(
                scorer, case, figures.result, base_dir=None, judges={}, run_id=run_id
            )
            out.append(run.scored(scorer, result))
    runs = sum(1 for e in out if isinstance(e, EvalCaseCompleted))
    out.append(EvalRunCompleted(task_id=run_id, runs=runs, scores=runs))
    stamped = [
        e.model_copy(update={"seq": i, "correlation_id": run_id}) for i, e in enumerate(out, 1)
    ]
    await ledger.append(stamped)
    return run_id
