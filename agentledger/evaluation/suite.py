"""Eval suites: what to run (a dataset), against what (baseline and candidate), scored how.

A suite is a YAML (or JSON) file::

    name: expense-pipeline
    dataset:
      cases:                       # goals to run ...
        - {id: two-currencies, goal: "Summarise: taxi 10 eur; train 5 usd", expected: {...}}
      # tasks: {workflow: expense-pipeline, status: completed, limit: 20}   # ... or recorded tasks
    baseline: {workflow: ../pipeline/workflow.yaml}
    candidate: {workflow: candidate.yaml, models: {summariser: gpt-4o-mini}}
    repetitions: 3                 # each case runs N times per variant
    mode: live                     # replay: tools answer from the baseline's recordings
    allow_side_effects: false      # no side-effecting tool runs during an eval unless true
    scorers:
      - {name: total, type: exact, field: text}
      - {name: shape, type: json_schema, schema: {type: object, required: [totals]}}
      - {name: totals, type: python, function: "scorers:totals_match"}
      - name: faithful
        type: judge
        rubric: "Does the summary state every currency total correctly?"
        prompt_version: v1
        model: {provider: openai, model: gpt-4o-mini, base_url: http://..., api_key_env: KEY}
    thresholds: {max_pass_rate_drop: 0.05, max_cost_increase: 0.25}

Paths (workflows, python scorers) are relative to the suite file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from agentledger.errors import UsageError
from agentledger.llm.base import ModelSettings

_ID = r"^[A-Za-z0-9_.:-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Case(_Strict):
    id: str = Field(min_length=1, max_length=128, pattern=_ID)
    goal: str = Field(min_length=1)
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    expected: JsonValue = None  # what the exact scorer compares with (and scorers may read)
    baseline_task: str | None = None  # the recorded task this case came from, if any


class TaskQuery(_Strict):
    """Recorded tasks chosen from the ledger (newest first)."""

    workflow: str | None = None  # the workflow name recorded in goal_submitted
    status: str | None = "completed"
    since: datetime | None = None
    goal_contains: str | None = None
    limit: int = Field(default=20, ge=1, le=10_000)


class Dataset(_Strict):
    cases: list[Case] = Field(default_factory=list)
    tasks: TaskQuery | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Dataset:
        if bool(self.cases) == (self.tasks is not None):
            raise ValueError("give the dataset either `cases` (goals) or `tasks` (a query)")
        ids = [c.id for c in self.cases]
        if len(set(ids)) != len(ids):
            raise ValueError("case ids must be unique")
        return self


class Variant(_Strict):
    workflow: str | None = None  # the file; for a baseline of recorded tasks, not needed
    models: dict[str, str] = Field(default_factory=dict)  # agent (or "*") -> model name


class ExactScorer(_Strict):
    name: str = Field(pattern=_ID)
    type: Literal["exact"]
    field: str | None = None  # a dotted path into the output; the whole output by default
    expected_field: str | None = None  # a dotted path into the case's `expected`


class JsonSchemaScorer(_Strict):
    name: str = Field(pattern=_ID)
    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")
    field: str | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PythonScorer(_Strict):
    """``function(case, output) -> bool | float | (score, reasoning)`` (0 to 1; ≥ pass_at passes)."""

    name: str = Field(pattern=_ID)
    type: Literal["python"]
    function: str
    pass_at: float = Field(default=1.0, ge=0, le=1)


class JudgeScorer(_Strict):
    """An LLM scores the output against a rubric, with a versioned prompt (see judge.py)."""

    name: str = Field(pattern=_ID)
    type: Literal["judge"]
    rubric: str = Field(min_length=1)
    prompt_version: str = "v1"
    model: ModelSettings
    pass_at: float = Field(default=0.7, ge=0, le=1)


Scorer = Annotated[
    ExactScorer | JsonSchemaScorer | PythonScorer | JudgeScorer, Field(discriminator="type")
]


class Thresholds(_Strict):
    """When ``eval report`` fails (exits 1). Fractions: 0.05 is five points / five percent."""

    max_pass_rate_drop: float | None = Field(default=None, ge=0)
    max_score_drop: float | None = Field(default=None, ge=0)  # any scorer's mean score
    max_cost_increase: float | None = Field(default=None, ge=0)  # relative: 0.25 = +25%
    max_latency_increase: float | None = Field(default=None, ge=0)  # relative


class Suite(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    dataset: Dataset
    baseline: Variant = Field(default_factory=Variant)
    candidate: Variant
    repetitions: int = Field(default=1, ge=1, le=100)
    mode: Literal["live", "replay"] = "live"
    allow_side_effects: bool = False
    scorers: list[Scorer] = Field(min_length=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    source: Path | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Suite:
        names = [s.name for s in self.scorers]
        if len(set(names)) != len(names):
            raise ValueError("scorer names must be unique")
        if self.dataset.cases and self.baseline.workflow is None:
            raise ValueError("a dataset of goals needs `baseline.workflow` to run them")
        if self.candidate.workflow is None and self.dataset.tasks is None:
            raise ValueError("`candidate.workflow` is required")
        return self

    def path(self, relative: str) -> Path:
        base = self.source.parent if self.source is not None else Path.cwd()
        return (base / relative).resolve()


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file; a bad one raises ``UsageError`` saying what is wrong."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read suite {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"suite {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"suite {path} must be a mapping (name, dataset, candidate, scorers)")
    try:
        return Suite.model_validate({**data, "source": path.resolve()})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(suite)'}: {e['msg']}"
            for e in exc.errors()[:8]
        )
        raise UsageError(f"suite {path} is invalid: {problems}") from None
