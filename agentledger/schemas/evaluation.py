"""Evaluation events: a task forked from another, and an eval run's cases and scores.

A fork is a task whose first events were copied from a parent task; ``task_forked``
follows the copied history and says where it came from. An eval run is recorded under its
own id as the ``task_id``: it starts, each run of a case (baseline or candidate) completes,
each scorer records a score (a judge's with its rubric and reasoning), and it ends.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from agentledger.schemas.envelope import EventBase

Variant = Literal["baseline", "candidate"]


class TaskForked(EventBase):
    """This task's history up to ``fork_seq`` was copied from ``parent_task_id``."""

    type: Literal["task_forked"] = "task_forked"
    parent_task_id: str
    fork_seq: int = Field(ge=1)
    copied_events: int = Field(ge=1)
    workflow_path: str | None = None  # the workflow the fork continues with, when changed
    model_overrides: dict[str, str] = Field(default_factory=dict)  # agent (or "*") -> model
    edited_outputs: list[str] = Field(default_factory=list)  # subtask ids given a new output


class EvalRunStarted(EventBase):
    type: Literal["eval_run_started"] = "eval_run_started"
    suite: str
    suite_path: str | None = None
    mode: Literal["live", "replay", "shadow"]
    cases: int = Field(ge=0)
    repetitions: int = Field(ge=1)
    baseline: str  # what the baseline is: a workflow file, or "recorded tasks"
    candidate: str
    scorers: list[str] = Field(default_factory=list)
    allow_side_effects: bool = False
    thresholds: dict[str, float] = Field(default_factory=dict)  # when `eval report` fails


class EvalCaseCompleted(EventBase):
    """One run of one case by one variant: the task it made and what it cost."""

    type: Literal["eval_case_completed"] = "eval_case_completed"
    case_id: str
    variant: Variant
    repetition: int = Field(ge=0)
    run_task_id: str
    status: str
    output: JsonValue = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    blocked_side_effects: int = 0  # side-effecting tool calls refused during the eval


class EvalScoreRecorded(EventBase):
    """One scorer's verdict on one run of one case. A judge's carries rubric and reasoning."""

    type: Literal["eval_score_recorded"] = "eval_score_recorded"
    case_id: str
    variant: Variant
    repetition: int = Field(ge=0)
    run_task_id: str
    scorer: str
    kind: Literal["exact", "json_schema", "python", "judge"]
    score: float
    passed: bool
    reasoning: str = ""
    rubric: str | None = None
    prompt_version: str | None = None
    judge_model: str | None = None
    error: str | None = None  # the scorer could not score (the score is then 0)


class EvalRunCompleted(EventBase):
    type: Literal["eval_run_completed"] = "eval_run_completed"
    runs: int = Field(ge=0)
    scores: int = Field(ge=0)
    baseline_pass_rate: float | None = None
    candidate_pass_rate: float | None = None
