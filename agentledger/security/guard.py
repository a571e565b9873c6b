"""The security hooks the processors and runners call, kept in one place.

* ``admit_goal``: a goal's inputs are screened for injection and the goal masked, before
  it is written (embedded ``submit`` and the Kafka worker's goal intake).
* ``protect``: a final result leaving the system is checked (``outbound``); masking
  itself is done by the log's write guard on every append (``streams.write_guard``).
* ``screen_tool_result``: a tool's result is screened before it is recorded and handed
  to the model.
* ``check_call``: a requested call is checked against its tool's policy and, for
  ``external`` tools, for raw personal data in its arguments.
* ``rejection_stop``: a subtask whose calls keep being refused is stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import JsonValue

from agentledger.agents.context import Runtime
from agentledger.agents.stops import stop
from agentledger.agents.workflow import AgentSpec
from agentledger.projections.task_state import SubtaskState, TaskState
from agentledger.redaction import MARKERS, redact
from agentledger.schemas import (
    EventBase,
    GoalSubmitted,
    InjectionSuspected,
    TaskCompleted,
    TaskFailed,
    ToolCallRejected,
    ToolCallRequested,
)
from agentledger.security.injection import screen
from agentledger.security.policy import PolicyContext
from agentledger.tools.registry import Tool

__all__ = [
    "admit_goal",
    "check_call",
    "leaks",
    "protect",
    "rejection_stop",
    "resolve_for",
    "screen_tool_result",
]


def leaks(value: JsonValue) -> list[str]:
    """The kinds of raw personal data or secrets in ``value`` (placeholders do not count)."""
    kinds: set[str] = set()

    def mark(kind: str, raw: str) -> str:
        kinds.add(kind)
        return MARKERS[kind]

    redact(value, mark)
    return sorted(kinds)


def admit_goal(goal: GoalSubmitted, runtime: Runtime) -> list[EventBase]:
    """The goal as it is to be written, followed by an ``injection_suspected`` per input
    that looked like one. Those carry no ``causation_id``: they must not mark the goal
    handled."""
    action = runtime.workflow.security.injection
    inputs = dict(goal.inputs)
    flagged: list[EventBase] = []
    for key, value in goal.inputs.items():
        screened = screen(value, action)
        if not screened.suspected:
            continue
        inputs[key] = screened.value
        flagged.append(
            InjectionSuspected(
                task_id=goal.task_id,
                seq=goal.seq + 1 + len(flagged),
                correlation_id=goal.correlation_id,
                source=f"input:{key}",
                rules=screened.rules,
                excerpt=screened.excerpt,
                action=action,
            )
        )
    if flagged:
        goal = GoalSubmitted.model_validate({**goal.model_dump(), "inputs": inputs})
    return protect([goal, *flagged], runtime)


def protect(events: Sequence[EventBase], runtime: Runtime) -> list[EventBase]:
    """Events as they may be written: with a raw primary log, a final result that holds
    personal data is masked or refused by the ``outbound`` policy. (The log's write guard
    masks everything else on append, so no writer has to remember it.)"""
    if runtime.workflow.security.masked:
        return list(events)
    return [_outbound_result(e, runtime) if isinstance(e, TaskCompleted) else e for e in events]


def _outbound_result(event: TaskCompleted, runtime: Runtime) -> EventBase:
    kinds = leaks(event.result)
    if not kinds:
        return event
    if runtime.workflow.security.outbound == "mask":
        return event.model_copy(update={"result": runtime.masker.mask(event.result)})
    return TaskFailed(
        task_id=event.task_id,
        seq=event.seq,
        causation_id=event.causation_id,
        correlation_id=event.correlation_id,
        agent=event.agent,
        reason=f"the final result holds personal data or secrets ({', '.join(kinds)}) and "
        "the outbound policy is block",
        error_kind="data_leak",
    )


def screen_tool_result(
    request: ToolCallRequested, cause: EventBase, result: JsonValue, runtime: Runtime
) -> tuple[JsonValue, list[EventBase]]:
    """The result to record and hand to the model, and an ``injection_suspected`` if any."""
    action = runtime.workflow.security.injection
    screened = screen(result, action)
    if not screened.suspected:
        return result, []
    event = InjectionSuspected.caused_by(
        cause,
        subtask_id=request.subtask_id,
        call_id=request.call_id,
        source=f"tool:{request.tool}#{request.call_id}",
        rules=screened.rules,
        excerpt=screened.excerpt,
        action=action,
    )
    return screened.value, [event]


def resolve_for(
    tool: Tool, arguments: dict[str, JsonValue], runtime: Runtime
) -> dict[str, JsonValue]:
    """Arguments as ``tool`` gets them: placeholders resolved only if it declares ``raw_values``."""
    if not tool.raw_values:
        return arguments
    resolved = runtime.masker.unmask(arguments)
    assert isinstance(resolved, dict)
    return resolved


def check_call(
    state: TaskState,
    runtime: Runtime,
    sub: SubtaskState,
    tool: Tool,
    arguments: dict[str, JsonValue],
) -> tuple[dict[str, JsonValue], str | None, str]:
    """``(arguments to request, refusal reason or None, error_kind)`` for a validated call."""
    policy = runtime.workflow.tool_policies.get(tool.name)
    if policy is not None:
        context = PolicyContext(state.task_id, sub.id, sub.agent, tool.name, state)
        real = runtime.masker.unmask(arguments)  # a policy judges real recipients and URLs
        assert isinstance(real, dict)
        problems = policy.problems(real, context)
        if problems:
            reason = f"the policy of {tool.name!r} refuses this call: " + "; ".join(problems)
            return arguments, reason, "policy_violation"
    # A tool that declares raw_values gets them by design; its policy is what bounds it.
    if tool.risk == "external" and not tool.raw_values:
        kinds = leaks(arguments)
        if kinds and runtime.workflow.security.outbound == "block":
            reason = (
                f"the arguments hold personal data or secrets ({', '.join(kinds)}) and "
                f"{tool.name!r} sends data out of the system; leave them out"
            )
            return arguments, reason, "data_leak"
        if kinds:
            masked = runtime.masker.mask(arguments)
            assert isinstance(masked, dict)
            return masked, None, ""
    return arguments, None, ""


def rejection_stop(
    cause: EventBase, spec: AgentSpec, sub: SubtaskState, outcomes: Sequence[EventBase]
) -> list[EventBase]:
    """Stop the subtask when its refused calls go over ``max_rejected_calls``.

    The stop comes first in the batch, so the refusals recorded after it cannot start
    another step."""
    rejected = [o for o in outcomes if isinstance(o, ToolCallRejected)]
    total = sub.rejected_calls + len(rejected)
    if not rejected or total <= spec.max_rejected_calls:
        return []
    last = rejected[-1]
    stopped = stop(
        "subtask",
        cause,
        limit="rejected_tool_calls",
        scope="agent",
        value=total,
        threshold=spec.max_rejected_calls,
        subtask_id=sub.id,
        detail=f"last refused: {last.tool} ({last.error_kind})",
        reason=f"{spec.name} had {total} tool calls refused, over the limit of "
        f"{spec.max_rejected_calls}; the last: {last.tool} ({last.error_kind}): "
        f"{last.reason[:300]}",
        error_kind="too_many_rejected_calls",
    )
    return [*stopped, *rejected]
