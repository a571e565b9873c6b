"""Running an eval suite: every case, N times, by baseline and candidate, then scored.

``EvalRunner(suite, log, settings).run()`` records everything as events under the run's id
(its ``task_id``) in the same ledger as the tasks it ran, so ``eval report``, the audit
table (``agentledger audit sync``) and the console all see it:

* ``eval_run_started``;
* per case, variant and repetition: the run as an ordinary task (goal submitted with
  ``submitted_by: eval:<run id>``), then ``eval_case_completed`` with its figures and one
  ``eval_score_recorded`` per scorer;
* ``eval_run_completed``.

A dataset of recorded tasks is its own baseline: each task is scored once as it is, and the
candidate runs its goal. In replay mode the candidate's tools answer from the baseline's
recording (see tool_replay.py); side effects never run unless the suite allows them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentledger._imports import load_object
from agentledger.agents.context import Runtime
from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import Workflow, load_workflow
from agentledger.errors import UsageError
from agentledger.evaluation.candidate import with_models
from agentledger.evaluation.case_run import CaseRun
from agentledger.evaluation.diff import RunFigures
from agentledger.evaluation.judge import prompt
from agentledger.evaluation.scorers import score_output
from agentledger.evaluation.suite import Case, JudgeScorer, PythonScorer, Suite, TaskQuery
from agentledger.evaluation.tool_replay import EvalTools
from agentledger.llm.base import ChatModel
from agentledger.llm.factory import build_model
from agentledger.projections.task_state import fold
from agentledger.schemas import (
    EvalRunCompleted,
    EvalRunStarted,
    Event,
    EventBase,
    GoalSubmitted,
    new_event_id,
)
from agentledger.schemas.evaluation import Variant
from agentledger.security.masking import Masker, SqliteVault
from agentledger.settings import Settings
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.log import EventLog, task_events

ModelChoice = ChatModel | Mapping[str, ChatModel]


async def recorded_cases(log: EventLog, query: TaskQuery) -> list[Case]:
    """The recorded tasks a query picks, newest first, as cases (their result expected)."""
    cases: list[Case] = []
    for summary in await log.tasks(limit=100_000):
        if query.since is not None and summary.last_at < query.since:
            continue
        events = await task_events(log, summary.task_id)
        goal = next((e for e in events if isinstance(e, GoalSubmitted)), None)
        if goal is None or (goal.submitted_by or "").startswith("eval:"):
            continue  # not a task, or a run of an earlier eval
        state = fold(summary.task_id, events)
        if query.workflow is not None and goal.workflow.name != query.workflow:
            continue
        if query.status is not None and state.status != query.status:
            continue
        if query.goal_contains is not None and query.goal_contains not in goal.goal:
            continue
        cases.append(
            Case(
                id=summary.task_id,
                goal=goal.goal,
                inputs=goal.inputs,
                expected=state.result,
                baseline_task=summary.task_id,
            )
        )
        if len(cases) >= query.limit:
            break
    return cases


class EvalRunner:
    """Runs one suite (see the module docstring). ``models`` replaces the models the
    variants' workflows name (``{"baseline": ..., "candidate": ...}``), ``judges`` the judge
    models by scorer name: tests pass scripted ones; by default they are built."""

    def __init__(
        self,
        suite: Suite,
        log: EventLog,
        settings: Settings | None = None,
        *,
        models: Mapping[Variant, ModelChoice] | None = None,
        judges: Mapping[str, ChatModel] | None = None,
        run_id: str | None = None,
        concurrency: int = 4,
    ) -> None:
        self.suite = suite
        self.log = log
        self.settings = settings or Settings()
        self.models = dict(models or {})
        self.judges = dict(judges or {})
        self.run_id = run_id or new_event_id()
        self._limit = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._seq = 0
        self._runtimes: dict[Variant, Runtime] = {}
        self._vault: SqliteVault | None = None
        self._masker = Masker()
        self.runs = self.scores = 0

    @property
    def base_dir(self) -> Path | None:
        return self.suite.source.parent if self.suite.source is not None else None

    def _check(self) -> None:
        """Fail before anything runs when a scorer cannot work (exit 2, not half a run)."""
        for s in self.suite.scorers:
            if isinstance(s, JudgeScorer):
                prompt(s.prompt_version, s.rubric)
            if isinstance(s, PythonScorer):
                load_object(s.function, base_dir=self.base_dir, what="scorer")

    def _workflow(self, variant: Variant, recorded_path: str | None) -> Workflow:
        spec = self.suite.baseline if variant == "baseline" else self.suite.candidate
        if spec.workflow is not None:
            path = self.suite.path(spec.workflow)
        elif recorded_path is not None:
            path = Path(recorded_path)
        else:
            raise UsageError(f"the suite names no {variant} workflow and the task recorded none")
        return with_models(load_workflow(path, settings=self.settings), spec.models)

    def _runtime(self, variant: Variant, recorded_path: str | None) -> Runtime:
        if variant not in self._runtimes:
            workflow = self._workflow(variant, recorded_path)
            self._runtimes[variant] = build_runtime(
                workflow, self.settings, models=self.models.get(variant)
            )
        return self._runtimes[variant]

    async def _record(self, events: Sequence[EventBase]) -> None:
        """Append to the run's own stream, masked: a case's `expected` value, a scorer's
        reasoning or a judge's may quote personal data that no event may hold raw."""
        async with self._lock:
            stamped = []
            for e in events:
                self._seq += 1
                stamped.append(
                    self._masker.mask_event(
                        e.model_copy(
                            update={
                                "seq": self._seq,
                                "task_id": self.run_id,
                                "correlation_id": self.run_id,
                            }
                        )
                    )
                )
            await self.log.append(stamped)

    async def run(self) -> str:
        self._check()
        suite = self.suite
        cases = list(suite.dataset.cases)
        if suite.dataset.tasks is not None:
            cases = await recorded_cases(self.log, suite.dataset.tasks)
        for s in suite.scorers:
            if isinstance(s, JudgeScorer) and s.name not in self.judges:
                self.judges[s.name] = build_model(s.model, base_dir=self.base_dir)
        baseline_desc = (
            "recorded tasks" if suite.dataset.tasks is not None else str(suite.baseline.workflow)
        )
        self._vault = SqliteVault(self.settings.vault_path)
        self._masker = Masker(self._vault)  # the placeholders of the ledger's own vault
        try:
            await self._record(
                [
                    EvalRunStarted(
                        task_id=self.run_id,
                        suite=suite.name,
                        suite_path=str(suite.source) if suite.source else None,
                        mode=suite.mode,
                        cases=len(cases),
                        repetitions=suite.repetitions,
                        baseline=baseline_desc,
                        candidate=str(suite.candidate.workflow or "the recorded workflow")
                        + (
                            f" with models {suite.candidate.models}"
                            if suite.candidate.models
                            else ""
                        ),
                        scorers=[s.name for s in suite.scorers],
                        allow_side_effects=suite.allow_side_effects,
                        thresholds=suite.thresholds.model_dump(exclude_none=True),
                    )
                ]
            )
            await asyncio.gather(*(self._case(case) for case in cases))
            rates = await self._pass_rates()
            await self._record(
                [
                    EvalRunCompleted(
                        task_id=self.run_id,
                        runs=self.runs,
                        scores=self.scores,
                        baseline_pass_rate=rates.get("baseline"),
                        candidate_pass_rate=rates.get("candidate"),
                    )
                ]
            )
        finally:
            for runtime in self._runtimes.values():
                await runtime.aclose()
            for judge in self.judges.values():
                close = getattr(judge, "aclose", None)
                if close is not None:
                    await close()
            self._vault.close()
        return self.run_id

    async def _case(self, case: Case) -> None:
        async with self._limit:
            recorded_path: str | None = None
            if case.baseline_task is not None:
                baseline = await task_events(self.log, case.baseline_task)
                goal = next(e for e in baseline if isinstance(e, GoalSubmitted))
                recorded_path = goal.workflow.path
                await self._score_run(case, "baseline", 0, baseline, blocked=0)
            else:
                baseline = []
                for rep in range(self.suite.repetitions):
                    events, tools = await self._run_once(case, "baseline", None, None)
                    await self._score_run(case, "baseline", rep, events, blocked=tools.blocked)
                    baseline = baseline or events
            replay = baseline if self.suite.mode == "replay" else None
            for rep in range(self.suite.repetitions):
                events, tools = await self._run_once(case, "candidate", replay, recorded_path)
                await self._score_run(case, "candidate", rep, events, blocked=tools.blocked)

    async def _run_once(
        self,
        case: Case,
        variant: Variant,
        replay: Sequence[Event] | None,
        recorded_path: str | None,
    ) -> tuple[list[Event], EvalTools]:
        base = self._runtime(variant, recorded_path)
        tools = EvalTools(
            base.workflow, recording=replay, allow_side_effects=self.suite.allow_side_effects
        )
        runtime = dataclasses.replace(base, workflow=tools.workflow)
        runner = EmbeddedRunner(self.log, runtime)
        task_id = await runner.submit(
            case.goal, inputs=dict(case.inputs), submitted_by=f"eval:{self.run_id}"
        )
        await runner.run(task_id)
        return await task_events(self.log, task_id), tools

    async def _score_run(
        self, case: Case, variant: Variant, rep: int, events: list[Event], *, blocked: int
    ) -> None:
        figures = RunFigures.of(events)
        run = CaseRun(self.run_id, case.id, variant, rep, figures)
        out: list[EventBase] = [run.completed(blocked=blocked)]
        for scorer in self.suite.scorers:
            result = await score_output(
                scorer,
                case,
                figures.result,
                base_dir=self.base_dir,
                judges=self.judges,
                run_id=self.run_id,
            )
            out.append(run.scored(scorer, result))
        self.runs += 1
        self.scores += len(out) - 1
        await self._record(out)

    async def _pass_rates(self) -> dict[str, float]:
        from agentledger.evaluation.report import pass_rates

        return pass_rates(await task_events(self.log, self.run_id))
