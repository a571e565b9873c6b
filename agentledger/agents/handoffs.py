"""Peer-to-peer: agents hand work to each other along the graph's routes, no orchestrator.

The goal goes to the workflow's ``entry`` agent. An agent with routes answers with its
output contract plus a reserved ``handoff`` field (``{"to": agent, "note": ...}``); a
structured field rather than a tool, so one final answer carries both the work and the
routing decision, with the OpenAI API (``response_format`` json_schema) and the scripted
model alike. The step refuses a handoff the graph does not declare (``handoff_rejected``,
the agent is told and may correct it a bounded number of times); the orchestrator accepts a
valid one (``handoff_accepted``) and assigns the receiver a new subtask whose input is the
sender's answer, unless the hop cap or the oscillation detector stops the task. An answer
without a handoff ends the task with that answer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, JsonValue, create_model

from agentledger.agents.stops import stop
from agentledger.projections.handoffs import Hop
from agentledger.schemas import (
    HANDOFF_FIELD,
    EventBase,
    GoalSubmitted,
    HandoffAccepted,
    HandoffRejected,
    HandoffRequest,
    LlmCallCompleted,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    TaskCompleted,
    TaskFailed,
)

if TYPE_CHECKING:
    from agentledger.agents.context import ProcessorContext
    from agentledger.agents.workflow import AgentSpec, Workflow
    from agentledger.projections.task_state import SubtaskState


def subtask_id(agent: str, position: int) -> str:
    """The id of the ``position``-th turn of work in a peer-to-peer task (entry is 1)."""
    return f"{agent}-{position}"


def workflow_problems(wf: Workflow) -> list[str]:
    if wf.pattern != "peer_to_peer":
        return []
    problems = []
    for agent in wf.agents.values():
        if agent.routes_to and agent.output_model is None:
            problems.append(
                f"agent {agent.name!r} hands work on in a peer_to_peer workflow, so it needs "
                "`output` (a pydantic model): the handoff is a reserved field of its answer"
            )
        elif agent.output_model is not None and HANDOFF_FIELD in agent.output_model.model_fields:
            problems.append(
                f"output model of {agent.name!r} has a field {HANDOFF_FIELD!r}, which "
                "peer_to_peer workflows reserve for handoffs"
            )
    return problems


@functools.lru_cache(maxsize=128)
def with_handoff(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` plus the optional ``handoff`` field (same name, so the schema reads the same)."""
    extended: type[BaseModel] = create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        handoff=(
            HandoffRequest | None,
            Field(default=None, description="set to hand your work to another agent"),
        ),
    )
    return extended


def answer_model(wf: Workflow, spec: AgentSpec) -> type[BaseModel] | None:
    """The model an agent's final answer is validated against in this workflow."""
    if wf.pattern == "peer_to_peer" and spec.routes_to and spec.output_model is not None:
        return with_handoff(spec.output_model)
    return spec.output_model


def prompt_note(wf: Workflow, spec: AgentSpec) -> str | None:
    """What an agent that may hand work on is told about it (names the allowed receivers)."""
    if wf.pattern != "peer_to_peer" or not spec.routes_to:
        return None
    lines = [
        f"- {name}: {wf.agents[name].description or wf.agents[name].instructions[:160]}"
        for name in wf.graph.targets(spec.name)
    ]
    return (
        'To hand your work on, set "handoff" in your final answer to {"to": <agent>, "note": '
        "<what they should do>}; that agent receives your answer. You may hand off only to:\n"
        + "\n".join(lines)
        + '\nLeave "handoff" out when the work is finished: your answer is then the result.'
    )


def split(output: JsonValue) -> tuple[JsonValue, HandoffRequest | None]:
    """An answer without its ``handoff`` field, and the handoff it asks for (if any)."""
    if not isinstance(output, dict) or HANDOFF_FIELD not in output:
        return output, None
    rest = {k: v for k, v in output.items() if k != HANDOFF_FIELD}
    request = output[HANDOFF_FIELD]
    return rest, None if request is None else HandoffRequest.model_validate(request)


def route_problem(wf: Workflow, source: str, target: str) -> tuple[str, str] | None:
    """``(error_kind, reason)`` when the graph does not let ``source`` hand work to ``target``."""
    allowed = f"{source} may hand off to: {', '.join(wf.graph.targets(source)) or 'nobody'}"
    if target not in wf.agents:
        return "unknown_agent", f"there is no agent named {target!r}; {allowed}"
    if not wf.graph.allows(source, target):
        return "undeclared_route", f"the graph declares no route {source} -> {target}; {allowed}"
    return None


def review(
    event: LlmCallCompleted,
    ctx: ProcessorContext,
    spec: AgentSpec,
    sub: SubtaskState,
    output: JsonValue,
) -> tuple[JsonValue, HandoffRejected | None]:
    """Check the handoff in a valid answer: the answer to record, or the refusal to record.

    An empty ``handoff`` is dropped from the answer, so a final answer is the plain contract.
    Only answers validated with the handoff field (:func:`answer_model`) are looked at.
    """
    wf = ctx.runtime.workflow
    if wf.pattern != "peer_to_peer" or not spec.routes_to:
        return output, None
    rest, request = split(output)
    if request is None:
        return rest, None
    problem = route_problem(wf, spec.name, request.to)
    if problem is None:
        return output, None
    kind, reason = problem
    count = ctx.state.handoffs.rejections.get(sub.id, 0) + 1
    rejected = HandoffRejected.caused_by(
        event,
        subtask_id=sub.id,
        from_agent=spec.name,
        to_agent=request.to,
        error_kind=kind,
        reason=reason,
        rejection=count,
        will_retry=count <= wf.limits.max_handoff_rejections,
    )
    return output, rejected


def feedback(rejected: HandoffRejected) -> str:
    return (
        f"Your handoff to {rejected.to_agent!r} was refused: {rejected.reason}. Answer again: "
        'hand off to one of those agents, or leave "handoff" out to finish with your answer.'
    )


def failure_reason(rejected: HandoffRejected) -> str:
    return (
        f"{rejected.from_agent} handed off outside the graph {rejected.rejection} times; "
        f"last: {rejected.reason}"
    )


def start(event: GoalSubmitted, ctx: ProcessorContext) -> list[EventBase]:
    """The goal goes to the entry agent, with the task's inputs."""
    entry = ctx.runtime.workflow.entry
    return [
        SubtaskAssigned.caused_by(
            event,
            agent=entry,
            subtask_id=subtask_id(entry, 1),
            description=event.goal,
            inputs=dict(event.inputs),
        )
    ]


def oscillation(hops: Sequence[Hop], cycles: int) -> list[str] | None:
    """The agents, when ``hops`` ends with one pair handing work back and forth ``cycles``
    full times (A -> B -> A is one cycle); else None."""
    window = hops[-2 * cycles :]
    if len(window) < 2 * cycles:
        return None
    a, b = window[0].from_agent, window[0].to_agent
    if a == b:
        return None
    expected = [Hop(a, b) if i % 2 == 0 else Hop(b, a) for i in range(len(window))]
    if list(window) != expected:
        return None
    return [a, *(h.to_agent for h in window)]


def on_completed(event: SubtaskCompleted, ctx: ProcessorContext) -> list[EventBase]:
    """Hand the answer on (or stop a runaway), or end the task with it."""
    state, limits = ctx.state, ctx.runtime.workflow.limits
    sub = state.subtasks.get(event.subtask_id)
    if sub is None:
        return []
    output, request = split(event.output)
    if request is None:
        return [
            TaskCompleted.caused_by(event, agent=sub.agent, result=output, result_subtasks=[sub.id])
        ]
    hops = [*state.handoffs.hops, Hop(sub.agent, request.to)]
    if len(hops) > limits.max_handoffs:
        return _stop(
            event,
            sub.agent,
            limit="handoffs",
            value=len(hops),
            threshold=limits.max_handoffs,
            detail=f"{sub.agent} -> {request.to} would be handoff {len(hops)}",
            error_kind="handoff_limit",
        )
    cycle = oscillation(hops, limits.oscillation_cycles)
    if cycle is not None:
        return _stop(
            event,
            sub.agent,
            limit="oscillation",
            value=limits.oscillation_cycles,
            threshold=limits.oscillation_cycles,
            detail=f"{' -> '.join(cycle)}: {cycle[0]} and {cycle[1]} handed the work back "
            f"and forth {limits.oscillation_cycles} times",
            error_kind="oscillation",
        )
    to_subtask = subtask_id(request.to, len(hops) + 1)
    return [
        HandoffAccepted.caused_by(
            event,
            agent=sub.agent,
            from_agent=sub.agent,
            to_agent=request.to,
            hop=len(hops),
            from_subtask=sub.id,
            to_subtask=to_subtask,
            note=request.note,
        ),
        SubtaskAssigned.caused_by(
            event,
            agent=request.to,
            subtask_id=to_subtask,
            description=request.note or f"Continue the work {sub.agent} handed to you.",
            inputs={sub.id: output},
            depends_on=[sub.id],
        ),
    ]


def _stop(
    event: SubtaskCompleted,
    agent: str,
    *,
    limit: str,
    value: int,
    threshold: int,
    detail: str,
    error_kind: str,
) -> list[EventBase]:
    return stop(
        "task",
        event,
        agent=agent,
        limit=limit,
        scope="task",
        value=value,
        threshold=threshold,
        subtask_id=event.subtask_id,
        detail=detail,
        reason=f"{limit} limit: {detail}",
        error_kind=error_kind,
    )


def on_failed(event: SubtaskFailed, ctx: ProcessorContext) -> list[EventBase]:
    """A peer-to-peer task has no plan to repair: the failed hop fails the task."""
    sub = ctx.state.subtasks.get(event.subtask_id)
    who = f" ({sub.agent})" if sub else ""
    return [
        TaskFailed.caused_by(
            event,
            reason=f"subtask {event.subtask_id}{who} failed: {event.reason}",
            error_kind=event.error_kind,
            subtask_id=event.subtask_id,
        )
    ]
