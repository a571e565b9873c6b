"""Swarm aggregation: an agent that combines the outputs of the subtasks it depends on.

An agent declared with ``aggregate: {method, field}`` does not answer like the others.
Its candidates are the subtasks its own subtask depends on, in the plan's order:

* ``majority_vote`` (needs ``field``): the value of ``field`` given by most candidates
  wins; a tie goes to the value given first; the result is the output of the first
  candidate that gave it. No LLM call.
* ``score_average`` (needs ``field``, numeric): the result is ``{field: mean, "count": n}``
  over the candidates whose ``field`` is a number. No LLM call.
* ``judge``: the aggregator's model is asked which candidate is best and answers a
  :class:`JudgeVerdict`; an id that is not a candidate is rejected and repaired like any
  broken contract. The result is the chosen candidate's output.

Candidates without the field (or with a non-numeric one, for the average) are left out and
named in the event; when none is left the subtask fails (``aggregation_failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from agentledger.llm.base import canonical_json
from agentledger.schemas import (
    EventBase,
    OutputsAggregated,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    Vote,
)

if TYPE_CHECKING:
    from agentledger.agents.workflow import Workflow
    from agentledger.projections.task_state import SubtaskState

AggregateMethod = Literal["majority_vote", "judge", "score_average"]


class AggregateSpec(BaseModel):
    """How an aggregator agent combines its candidates (``aggregate:`` in a workflow file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: AggregateMethod
    field: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _field_when_needed(self) -> Self:
        if self.method != "judge" and self.field is None:
            raise ValueError(
                f"aggregate method {self.method!r} needs `field`: the field to combine"
            )
        return self


class JudgeVerdict(BaseModel):
    """A judge's answer: the best candidate, by its id."""

    model_config = ConfigDict(extra="forbid")

    best: str = Field(description="the id of the best candidate: one of the keys of `inputs`")
    reason: str = Field(default="", description="why it is the best, in a sentence or two")


def workflow_problems(wf: Workflow) -> list[str]:
    problems = []
    for agent in wf.agents.values():
        if agent.aggregate is None:
            continue
        if wf.pattern == "peer_to_peer":
            problems.append(
                f"agent {agent.name!r}: aggregate needs a planned subtask that depends on the "
                "candidates; it is not available in a peer_to_peer workflow"
            )
        if agent.output_model is not None:
            problems.append(
                f"agent {agent.name!r} aggregates, so it must not declare `output`: its result "
                "is the winning candidate's output (or the average)"
            )
        if agent.tools:
            problems.append(f"agent {agent.name!r} aggregates and cannot call tools")
    return problems


def combine(event: SubtaskAssigned, spec: AggregateSpec) -> list[EventBase]:
    """Majority vote or score average over the candidates in ``event.inputs``: no LLM call."""
    candidates = list(event.depends_on)
    assert spec.field is not None  # AggregateSpec requires it for these methods
    if spec.method == "majority_vote":
        return _majority(event, spec.field, candidates)
    return _average(event, spec.field, candidates)


def _values(
    inputs: Mapping[str, JsonValue], field: str, candidates: list[str], *, numeric: bool
) -> dict[str, JsonValue]:
    values: dict[str, JsonValue] = {}
    for c in candidates:
        output = inputs.get(c)
        if not isinstance(output, dict) or field not in output:
            continue
        value = output[field]
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            continue
        values[c] = value
    return values


def _left_out(candidates: list[str], values: Mapping[str, JsonValue], field: str) -> str:
    missing = [c for c in candidates if c not in values]
    return f"; left out (no usable {field!r}): {', '.join(missing)}" if missing else ""


def _failed(event: SubtaskAssigned, reason: str) -> list[EventBase]:
    return [
        SubtaskFailed.caused_by(
            event, subtask_id=event.subtask_id, reason=reason, error_kind="aggregation_failed"
        )
    ]


def _majority(event: SubtaskAssigned, field: str, candidates: list[str]) -> list[EventBase]:
    values = _values(event.inputs, field, candidates, numeric=False)
    if not values:
        return _failed(
            event, f"none of the candidates {candidates} has the field {field!r} to vote on"
        )
    tally: dict[str, Vote] = {}
    for c, value in values.items():  # candidate order, so a tie keeps the value given first
        key = canonical_json(value)
        prior = tally.get(key)
        tally[key] = Vote(
            value=value,
            count=(prior.count if prior else 0) + 1,
            candidates=[*(prior.candidates if prior else []), c],
        )
    votes = sorted(tally.values(), key=lambda v: -v.count)  # stable: ties keep that order
    top = votes[0]
    winner = top.candidates[0]
    detail = f"{top.count} of {len(values)} votes for {canonical_json(top.value)}"
    tied = sum(1 for v in votes if v.count == top.count)
    if tied > 1:
        detail += f"; a tie of {tied} values, won by the one given first (by {winner})"
    result = event.inputs[winner]
    return [
        OutputsAggregated.caused_by(
            event,
            subtask_id=event.subtask_id,
            method="majority_vote",
            field=field,
            candidates=candidates,
            values=values,
            votes=votes,
            winner=winner,
            result=result,
            detail=detail + _left_out(candidates, values, field),
        ),
        SubtaskCompleted.caused_by(event, subtask_id=event.subtask_id, output=result),
    ]


def _average(event: SubtaskAssigned, field: str, candidates: list[str]) -> list[EventBase]:
    values = _values(event.inputs, field, candidates, numeric=True)
    if not values:
        return _failed(
            event, f"none of the candidates {candidates} has a numeric {field!r} to average"
        )
    numbers = [float(v) for v in values.values() if isinstance(v, int | float)]
    mean = sum(numbers) / len(numbers)
    result: JsonValue = {field: mean, "count": len(numbers)}
    return [
        OutputsAggregated.caused_by(
            event,
            subtask_id=event.subtask_id,
            method="score_average",
            field=field,
            candidates=candidates,
            values=values,
            result=result,
            detail=f"mean of {len(numbers)} values: {mean:g}"
            + _left_out(candidates, values, field),
        ),
        SubtaskCompleted.caused_by(event, subtask_id=event.subtask_id, output=result),
    ]


def verdict_errors(verdict: JsonValue, sub: SubtaskState) -> list[str]:
    """Why a judge's (schema-valid) verdict cannot be used: it must name a candidate."""
    best = verdict.get("best") if isinstance(verdict, dict) else None
    candidates = list(sub.depends_on)
    if best not in candidates:
        return [f"best: {best!r} is not a candidate; answer with one of {candidates}"]
    return []


def judged(event: EventBase, sub: SubtaskState, verdict: JsonValue) -> list[EventBase]:
    """The judge picked a valid candidate: record it, and its output is the subtask's."""
    assert isinstance(verdict, dict)  # a JudgeVerdict, checked by verdict_errors
    best = str(verdict["best"])
    result = sub.inputs[best]
    reason = verdict.get("reason")
    return [
        OutputsAggregated.caused_by(
            event,
            subtask_id=sub.id,
            method="judge",
            candidates=list(sub.depends_on),
            winner=best,
            result=result,
            detail=reason if isinstance(reason, str) else "",
        ),
        SubtaskCompleted.caused_by(event, subtask_id=sub.id, output=result),
    ]
