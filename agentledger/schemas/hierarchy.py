"""Nested plans: a sub-orchestrator plans the subtask it was given into its own subtasks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentledger.schemas.envelope import EventBase
from agentledger.schemas.goals import Plan


class SubtaskPlanned(EventBase):
    """A sub-orchestrator's valid plan for ``subtask_id``.

    Ids in ``plan`` are local to it: they run as ``<subtask_id>/<id>``. ``level`` is 2 for a
    subtask of the task's plan (which is level 1), 3 one level further down, and so on.
    """

    type: Literal["subtask_planned"] = "subtask_planned"
    subtask_id: str
    level: int = Field(ge=2)
    plan: Plan
    attempt: int = 1


class SubtaskPlanRejected(EventBase):
    """A sub-orchestrator's plan broke its team's graph or was not a DAG."""

    type: Literal["subtask_plan_rejected"] = "subtask_plan_rejected"
    subtask_id: str
    level: int = Field(ge=2)
    problems: list[str]
    attempt: int
    will_retry: bool


def nested_id(parent: str, local: str) -> str:
    """The id a nested plan's subtask ``local`` runs under: ``research`` + ``a`` -> ``research/a``.

    Plan ids cannot contain ``/``, so nested ids never collide with the parent's siblings.
    """
    return f"{parent}/{local}" if parent else local


def parent_of(subtask_id: str) -> str:
    """The subtask whose nested plan holds ``subtask_id`` ("" for the task's own plan)."""
    return subtask_id.rpartition("/")[0]
