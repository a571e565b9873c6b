"""The security hooks the processors and runners call, kept in one place.

* ``admit_goal``: a goal's inputs are screened for injection and the goal masked, before
  it is written (embedded ``submit`` and the Kafka worker's goal intake).
* ``protect``: a final result leaving the system is checked (``outbound``); masking
  itself is done by the log's write guard on every append (``streams.write_guard``).
* ``screen_tool_result``: a tool's result is screened before it is recorded and handed
  to the model.
* ``check_call``: a requested call is checked against its tool's policy and, for
  ``external`` tools, for raw personal data in its arguments.
* ``check_provenance``: a requested side effect whose deciding arguments came from
  untrusted data is refused or held for approval (security/provenance.py).
* ``validate_call`` / ``release_for``: raw values only in the arguments a tool declares,
  secrets released recorded (security/release.py).
* ``neutralise_result_links``: links in a final result cannot carry data out
  (security/links.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import JsonValue

from agentledger.projections.task_state import SubtaskState, TaskState
from agentledger.redaction import MARKERS, redact
from agentledger.schemas import (
    EventBase,
    GoalSubmitted,
    InjectionSuspected,
    RawValueReleased,
    TaskCompleted,
    TaskFailed,
    ToolCallRejected,
    ToolCallRequested,
    UntrustedArgument,
)
from agentledger.schemas.security import InjectionMatch
from agentledger.security import provenance, release
from agentledger.security.injection import Screened, screen
from agentledger.security.links import neutralise_links
from agentledger.security.policy import PolicyContext
from agentledger.tools.registry import Tool

if TYPE_CHECKING:  # the runtime is handed in; security never builds or drives one
    from agentledger.agents.context import Runtime

__all__ = [
    "admit_goal",
    "check_call",
    "check_provenance",
    "leaks",
    "neutralise_result_links",
    "protect",
    "release_for",
    "resolve_for",
    "screen_tool_result",
    "validate_call",
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
                matches=_matches(screened),
            )
        )
    if flagged:
        goal = GoalSubmitted.model_validate({**goal.model_dump(), "inputs": inputs})
    return protect([goal, *flagged], runtime)


def protect(events: Sequence[EventBase], runtime: Runtime) -> list[EventBase]:
    """Events as they may be written: with a raw primary log, a final result that holds
    personal data is masked or refused by the ``outbound`` policy. (The log's write guard
    masks everything else on append, so no writer has to remember it.)"""
    events = [neutralise_result_links(e, runtime) for e in events]
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
        matches=_matches(screened),
    )
    return screened.value, [event]


def _matches(screened: Screened) -> list[InjectionMatch]:
    return [
        InjectionMatch(rule=rule, path=path, start=start, end=end, text=text)
        for rule, path, start, end, text in screened.matches
    ]


def resolve_for(
    tool: Tool, arguments: dict[str, JsonValue], runtime: Runtime
) -> dict[str, JsonValue]:
    """Arguments as ``tool`` gets them: placeholders resolved only where it declares them
    (``raw_values``; see security/release.py)."""
    resolved, _ = release.resolve(
        tool, arguments, runtime.masker, runtime.workflow.security.release
    )
    return resolved


def validate_call(
    tool: Tool, arguments: dict[str, JsonValue], runtime: Runtime
) -> dict[str, JsonValue]:
    """``arguments`` validated as ``tool`` will get them (declared placeholders resolved),
    recorded with the placeholders the model used. Raises ValueError saying what is wrong."""
    resolved, _, traced = release.resolve_traced(
        tool, arguments, runtime.masker, runtime.workflow.security.release
    )
    validated = tool.validate(resolved)
    kept = release.restore(validated, traced)
    assert isinstance(kept, dict)
    return kept


def release_for(
    request: ToolCallRequested, cause: EventBase, tool: Tool, runtime: Runtime
) -> tuple[dict[str, JsonValue], list[EventBase]]:
    """The arguments ``tool`` runs with, and a ``raw_value_released`` per secret in them."""
    resolved, released = release.resolve(
        tool, request.arguments, runtime.masker, runtime.workflow.security.release
    )
    events: list[EventBase] = [
        RawValueReleased.caused_by(
            cause,
            subtask_id=request.subtask_id,
            call_id=request.call_id,
            tool=tool.name,
            argument=r.argument,
            category=r.category,
            placeholder=r.placeholder,
            granted_by=r.granted_by,
        )
        for r in released
    ]
    return resolved, events


def _undeclared_leaks(tool: Tool, arguments: dict[str, JsonValue]) -> list[str]:
    """Raw personal data or secrets in arguments (or of categories) the tool does not declare."""
    kinds: set[str] = set()
    for name, value in arguments.items():
        kinds.update(set(leaks(value)) - release.declared(tool, name))
    return sorted(kinds)


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
    # A tool gets the raw values it declares by design; its policy is what bounds it.
    if tool.risk == "external":
        kinds = _undeclared_leaks(tool, arguments)
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


def check_provenance(
    cause: EventBase,
    state: TaskState,
    runtime: Runtime,
    sub: SubtaskState,
    outcomes: Sequence[EventBase],
) -> list[EventBase]:
    """``outcomes`` with each requested side effect whose deciding arguments came from
    untrusted data refused, or kept and held for approval (``security.provenance``), after
    an ``untrusted_argument`` naming the source. See security/provenance.py."""
    security = runtime.workflow.security
    if security.provenance == "off":
        return list(outcomes)
    out: list[EventBase] = []
    context: provenance.Context | None = None
    for outcome in outcomes:
        tool = (
            runtime.workflow.tools.get(outcome.tool)
            if isinstance(outcome, ToolCallRequested)
            else None
        )
        if tool is None or not (tool.side_effect or tool.risk == "external"):
            out.append(outcome)
            continue
        assert isinstance(outcome, ToolCallRequested)
        deciding = provenance.deciding_arguments(tool.decides, list(tool.arguments.model_fields))
        if context is None and deciding:
            context = provenance.subtask_context(
                state, sub, _workflow_texts(runtime), security.untrusted_inputs
            )
        taints = (
            provenance.tainted_arguments(
                outcome.arguments,
                deciding,
                context,
                policy=runtime.workflow.tool_policies.get(tool.name),
                trusted_values=security.trusted_values,
                unmask=lambda text: str(runtime.masker.unmask(text)),
            )
            if context is not None
            else []
        )
        if not taints:
            out.append(outcome)
            continue
        out.extend(
            UntrustedArgument.caused_by(
                cause,
                subtask_id=outcome.subtask_id,
                call_id=outcome.call_id,
                tool=tool.name,
                argument=t.argument,
                value=t.value[:300],
                sources=list(t.sources),
                action=security.provenance,
            )
            for t in taints
        )
        if security.provenance == "approve":
            out.append(outcome)  # the tool executor asks a person first (approval_gate)
            continue
        first = taints[0]
        out.append(
            ToolCallRejected.caused_by(
                cause,
                subtask_id=outcome.subtask_id,
                iteration=outcome.iteration,
                call_id=outcome.call_id,
                tool=tool.name,
                reason=f"{first.argument!r} of {tool.name!r} is {first.value[:200]}, which comes "
                f"from untrusted data ({', '.join(first.sources)}) and not from the task, the "
                "workflow or an allow-list; a side effect may only target what the task "
                "itself names",
                error_kind="untrusted_argument",
            )
        )
    return out


def _workflow_texts(runtime: Runtime) -> tuple[str, ...]:
    """The trusted texts of the workflow: instructions, descriptions, allow-lists."""
    wf = runtime.workflow
    texts = [t for a in wf.agents.values() for t in (a.instructions, a.description)]
    texts += [t.description for t in wf.tools]
    for policy in wf.tool_policies.values():
        texts += [*(policy.allowed_recipients or ()), *(policy.allowed_domains or ())]
    texts += wf.security.trusted_values
    if wf.security.masked:  # compared with masked context: placeholder to placeholder
        return tuple(str(runtime.masker.mask(t)) for t in texts if t)
    return tuple(t for t in texts if t)


def neutralise_result_links(event: EventBase, runtime: Runtime) -> EventBase:
    """A final result leaves the system: a link in it must not carry data out
    (``security.link_domains``, see security/links.py). Other events pass unchanged."""
    if not isinstance(event, TaskCompleted):
        return event
    result, removed = neutralise_links(event.result, runtime.workflow.security.link_domains)
    return event.model_copy(update={"result": result}) if removed else event
