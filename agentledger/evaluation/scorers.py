"""Scorers: exact, JSON Schema, a Python function, and the LLM judge, as one call.

``score_output(scorer, case, output, ...)`` returns a ``ScoreResult`` (0 to 1 and a pass
flag). A scorer that cannot score — a Python function that raises, a judge that is down or
answers nonsense — gives score 0, not passed, and says why in ``error``: the eval goes on
and the report counts it as a failure, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import JsonValue

from agentledger._imports import load_object
from agentledger.errors import AgentLedgerError
from agentledger.evaluation.judge import judge
from agentledger.evaluation.suite import (
    Case,
    ExactScorer,
    JsonSchemaScorer,
    JudgeScorer,
    PythonScorer,
    Scorer,
)
from agentledger.llm.base import ChatModel


@dataclass(frozen=True)
class ScoreResult:
    score: float
    passed: bool
    reasoning: str = ""
    rubric: str | None = None
    prompt_version: str | None = None
    judge_model: str | None = None
    error: str | None = None


def pick(value: JsonValue, path: str | None) -> JsonValue:
    """``value`` at a dotted path (``totals.EUR``, ``items.0``); ``None`` when absent."""
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _failed(error: str, **extra: Any) -> ScoreResult:
    return ScoreResult(0.0, False, error=error, **extra)


async def score_output(
    scorer: Scorer,
    case: Case,
    output: JsonValue,
    *,
    base_dir: Path | None,
    judges: Mapping[str, ChatModel],
    run_id: str,
) -> ScoreResult:
    match scorer:
        case ExactScorer():
            got = pick(output, scorer.field)
            want = pick(case.expected, scorer.expected_field)
            same = got == want
            why = "equal" if same else f"expected {want!r}, got {got!r}"
            return ScoreResult(float(same), same, reasoning=why[:500])
        case JsonSchemaScorer():
            errors = sorted(
                jsonschema.Draft202012Validator(scorer.json_schema).iter_errors(
                    pick(output, scorer.field)
                ),
                key=lambda e: list(e.path),
            )
            if not errors:
                return ScoreResult(1.0, True, reasoning="valid")
            why = "; ".join(
                f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5]
            )
            return ScoreResult(0.0, False, reasoning=why[:500])
        case PythonScorer():
            return _python(scorer, case, output, base_dir)
        case JudgeScorer():
            try:
                verdict = await judge(
                    judges[scorer.name],
                    model_name=scorer.model.model,
                    rubric=scorer.rubric,
                    version=scorer.prompt_version,
                    goal=case.goal,
                    output=output,
                    run_id=run_id,
                    case_id=case.id,
                    scorer=scorer.name,
                    temperature=scorer.model.temperature,
                )
            except AgentLedgerError as exc:
                return _failed(
                    f"judge {scorer.model.model!r} failed: {exc}",
                    rubric=scorer.rubric,
                    prompt_version=scorer.prompt_version,
                    judge_model=scorer.model.model,
                )
            return ScoreResult(
                verdict.score,
                verdict.score >= scorer.pass_at,
                reasoning=verdict.reasoning,
                rubric=scorer.rubric,
                prompt_version=scorer.prompt_version,
                judge_model=scorer.model.model,
            )
    raise AssertionError(f"unhandled scorer {scorer!r}")  # pragma: no cover


def _python(
    scorer: PythonScorer, case: Case, output: JsonValue, base_dir: Path | None
) -> ScoreResult:
    function: Callable[[Case, JsonValue], Any] = load_object(
        scorer.function, base_dir=base_dir, what="scorer"
    )
    try:
        result = function(case, output)
    except Exception as exc:  # a scorer's bug is its score's error, not the eval's crash
        return _failed(f"{scorer.function} raised {type(exc).__name__}: {exc}")
    reasoning = ""
    if isinstance(result, tuple) and len(result) == 2:
        result, reasoning = result
    if isinstance(result, bool) or (isinstance(result, int | float) and 0 <= result <= 1):
        value = float(result)
    else:
        return _failed(f"{scorer.function} returned {result!r}; expected a bool or 0..1")
    return ScoreResult(value, value >= scorer.pass_at, reasoning=str(reasoning)[:1000])
