"""One run of one eval case by one variant, and the events that record it.

The suite runner and the shadow comparison both turn a finished run into an
``eval_case_completed`` event and one ``eval_score_recorded`` per scorer; this is the one
place that says how.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentledger.evaluation.diff import RunFigures
from agentledger.evaluation.scorers import ScoreResult
from agentledger.evaluation.suite import Scorer
from agentledger.schemas import EvalCaseCompleted, EvalScoreRecorded
from agentledger.schemas.evaluation import Variant


@dataclass(frozen=True)
class CaseRun:
    """A case's run (``figures``) within the eval run ``run_id`` (the events' task id)."""

    run_id: str
    case_id: str
    variant: Variant
    repetition: int
    figures: RunFigures

    def completed(self, *, blocked: int = 0) -> EvalCaseCompleted:
        """What the run produced and what it took; ``blocked`` side effects were refused."""
        f = self.figures
        return EvalCaseCompleted(
            task_id=self.run_id,
            case_id=self.case_id,
            variant=self.variant,
            repetition=self.repetition,
            run_task_id=f.task_id,
            status=f.status,
            output=f.result,
            input_tokens=f.input_tokens,
            output_tokens=f.output_tokens,
            cost_usd=f.cost_usd,
            latency_ms=f.wall_ms,
            llm_calls=f.llm_calls,
            tool_calls=f.tool_calls,
            blocked_side_effects=blocked,
        )

    def scored(self, scorer: Scorer, result: ScoreResult) -> EvalScoreRecorded:
        """``scorer``'s verdict; a run that did not complete never passes."""
        return EvalScoreRecorded(
            task_id=self.run_id,
            case_id=self.case_id,
            variant=self.variant,
            repetition=self.repetition,
            run_task_id=self.figures.task_id,
            scorer=scorer.name,
            kind=scorer.type,
            score=result.score,
            passed=result.passed and self.figures.status == "completed",
            reasoning=result.reasoning,
            rubric=result.rubric,
            prompt_version=result.prompt_version,
            judge_model=result.judge_model,
            error=result.error,
        )
