"""TaskState: the task as the log says it is, folded by a pure ``evolve(state, event)``.

State is immutable: ``evolve`` returns a new value and never changes the old one. The
runner hands each processor the state *as of the event it handles*, so a decision never
sees events that came after it in the log, whatever else is running concurrently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import orjson
from pydantic import JsonValue

from agentledger.llm.base import Message, canonical_json
from agentledger.projections.approvals import ApprovalState, fold_approval
from agentledger.projections.compaction import compact_turns
from agentledger.projections.frozen import replace
from agentledger.projections.handoffs import HandoffLog, evolve_handoffs
from agentledger.schemas import (
    AgentOutputProduced,
    AgentStepStarted,
    ApprovalDenied,
    ApprovalEscalated,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    ContextSummarized,
    Event,
    FailurePolicyApplied,
    GoalSubmitted,
    HandoffAccepted,
    HandoffRejected,
    LimitReached,
    LlmCallCompleted,
    LlmCallFailed,
    OutputRejected,
    Plan,
    PlanRejected,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    SubtaskPlanned,
    SubtaskPlanRejected,
    SubtaskSkipped,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRejected,
    ToolCallRequested,
    ToolCallStarted,
    UntrustedArgument,
    WorkflowRef,
)
from agentledger.schemas.hierarchy import nested_id

TaskStatus = Literal["new", "planning", "running", "completed", "failed", "cancelled"]
SubtaskStatus = Literal["pending", "assigned", "running", "completed", "failed", "skipped"]

DONE: frozenset[str] = frozenset({"completed", "skipped"})
"""Subtask statuses whose output dependents can use."""
ACTIVE: frozenset[str] = frozenset({"assigned", "running"})

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class SubtaskState:
    id: str
    agent: str
    description: str = ""
    depends_on: tuple[str, ...] = ()
    status: SubtaskStatus = "pending"
    attempt: int = 0
    iteration: int = 0
    inputs: Mapping[str, JsonValue] = field(default_factory=dict)
    turns: tuple[Message, ...] = ()  # the agent's conversation after its inputs
    pending_calls: frozenset[str] = frozenset()
    repairs: int = 0
    rejected_calls: int = 0  # tool calls refused before execution in this attempt
    output: JsonValue = None
    error: str | None = None
    context_tokens: int = 0  # input tokens the model reported for the last call (0: unknown)
    context_turns: int = 0  # how many turns that call's prompt held
    tool_call_counts: Mapping[str, int] = field(default_factory=dict)  # by tool + arguments


def tool_call_key(tool: str, arguments: JsonValue, raw_arguments: str | None) -> str:
    """What makes two tool calls "the same call" for loop detection."""
    return canonical_json([tool, arguments, raw_arguments])


@dataclass(frozen=True, slots=True)
class TaskState:
    task_id: str
    status: TaskStatus = "new"
    goal: str = ""
    workflow: WorkflowRef | None = None
    inputs: Mapping[str, JsonValue] = field(default_factory=dict)
    plan: Plan | None = None
    plan_attempts: int = 0
    nested_plans: Mapping[str, Plan] = field(default_factory=dict)  # by the planned subtask
    failing: FailurePolicyApplied | None = None  # the task fails once running branches finish
    subtasks: Mapping[str, SubtaskState] = field(default_factory=dict)
    iterations: Mapping[str, int] = field(default_factory=dict)  # per agent, whole task
    llm_calls: int = 0
    tool_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0  # LLM calls whose model had no known price (cost_usd 0 for them)
    tool_results: Mapping[str, JsonValue] = field(default_factory=dict)  # idempotency ledger
    tool_requests: Mapping[str, ToolCallRequested] = field(
        default_factory=dict
    )  # in flight, by key
    approvals: Mapping[str, ApprovalState] = field(default_factory=dict)  # by approval id
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    result: JsonValue = None
    failure: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    last_seq: int = 0
    handoffs: HandoffLog = field(default_factory=HandoffLog)  # peer-to-peer workflows
    # Calls (subtask/call id) whose targets came from untrusted data: a person approves them.
    held_calls: frozenset[str] = frozenset()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def pending_approvals(self) -> list[ApprovalState]:
        """Approvals waiting for a person (the task cannot finish until they are decided)."""
        return [a for a in self.approvals.values() if a.status == "pending"]

    def subtask(self, subtask_id: str) -> SubtaskState:
        return self.subtasks[subtask_id]


def _with_subtask(state: TaskState, sub: SubtaskState) -> TaskState:
    return replace(state, subtasks={**state.subtasks, sub.id: sub})


def _update(state: TaskState, subtask_id: str, **changes: object) -> TaskState:
    sub = state.subtasks.get(subtask_id)
    if sub is None:  # an event for a subtask this state never saw assigned: ignore, don't crash
        return state
    return _with_subtask(state, replace(sub, **changes))


def _tool_turn(sub: SubtaskState, call_id: str, tool: str, content: str) -> tuple[Message, ...]:
    return (*sub.turns, Message(role="tool", tool_call_id=call_id, name=tool, content=content))


def _settle_call(
    state: TaskState, subtask_id: str, call_id: str, tool: str, content: str
) -> TaskState:
    sub = state.subtasks.get(subtask_id)
    if sub is None:
        return state
    return _with_subtask(
        state,
        replace(
            sub,
            turns=_tool_turn(sub, call_id, tool, content),
            pending_calls=sub.pending_calls - {call_id},
        ),
    )


def evolve(state: TaskState, event: Event) -> TaskState:
    """Fold one event into the state. Pure: the same log always gives the same state."""
    last_seq = max(state.last_seq, event.seq)
    folded = _apply(state, event)
    if folded.last_seq == last_seq:
        return folded
    if folded is state:
        return replace(state, last_seq=last_seq)
    # A copy made by this call and seen by no one yet: stamp it rather than copy it again.
    object.__setattr__(folded, "last_seq", last_seq)
    return folded


def _apply(state: TaskState, event: Event) -> TaskState:
    """What ``event`` changes in ``state``, but ``last_seq``."""
    match event:
        case GoalSubmitted():
            return replace(
                state,
                status="planning",
                goal=event.goal,
                workflow=event.workflow,
                inputs=event.inputs,
                started_at=event.occurred_at,
            )
        case SubtaskAssigned():
            prior = state.subtasks.get(event.subtask_id)
            sub: SubtaskState | None = SubtaskState(
                id=event.subtask_id,
                agent=event.agent or "",
                description=event.description,
                depends_on=tuple(event.depends_on),
                status="assigned",
                attempt=event.attempt,
                inputs=event.inputs,
                repairs=0,
            )
            assert sub is not None
            if prior is not None and prior.depends_on and not sub.depends_on:
                sub = replace(sub, depends_on=prior.depends_on)
            if state.status == "planning" and not event.subtask_id.startswith("_"):
                state = replace(state, status="running")  # work without a plan (peer-to-peer)
            return _with_subtask(state, sub)
        case AgentStepStarted():
            sub = state.subtasks.get(event.subtask_id)
            if sub is None:
                return state
            agent = sub.agent
            turns = sub.turns
            if event.feedback:
                turns = (*turns, Message(role="user", content=event.feedback))
            state = replace(
                state, iterations={**state.iterations, agent: state.iterations.get(agent, 0) + 1}
            )
            return _with_subtask(
                state, replace(sub, status="running", iteration=event.iteration, turns=turns)
            )
        case LlmCallCompleted():
            state = replace(
                state,
                llm_calls=state.llm_calls + 1,
                tokens_in=state.tokens_in + event.usage.input_tokens,
                tokens_out=state.tokens_out + event.usage.output_tokens,
                cost_usd=round(state.cost_usd + event.cost_usd, 10),
                unpriced_calls=state.unpriced_calls + (1 if event.unpriced else 0),
            )
            sub = state.subtasks.get(event.subtask_id)
            if sub is None:
                return state
            turn = Message(role="assistant", content=event.content, tool_calls=event.tool_calls)
            counts = dict(sub.tool_call_counts)
            for c in event.tool_calls:
                key = tool_call_key(c.tool, c.arguments, c.raw_arguments)
                counts[key] = counts.get(key, 0) + 1
            return _with_subtask(
                state,
                replace(
                    sub,
                    turns=(*sub.turns, turn),
                    pending_calls=frozenset(c.call_id for c in event.tool_calls),
                    context_tokens=event.usage.input_tokens,
                    context_turns=len(sub.turns),
                    tool_call_counts=counts,
                ),
            )
        case LlmCallFailed():
            return replace(
                state,
                llm_calls=state.llm_calls + 1,
                errors=(
                    *state.errors,
                    f"{event.agent}: LLM call failed ({event.error_kind}): {event.message}",
                ),
            )
        case ToolCallRequested():
            return replace(
                state,
                tool_calls=state.tool_calls + 1,
                tool_requests={**state.tool_requests, event.idempotency_key: event},
            )
        case ToolCallStarted():
            return state
        case ToolCallRejected():
            # Refused by the executor (an open circuit breaker) after it was requested.
            state = replace(
                state,
                tool_requests={
                    k: v
                    for k, v in state.tool_requests.items()
                    if (v.subtask_id, v.call_id) != (event.subtask_id, event.call_id)
                },
            )
            sub = state.subtasks.get(event.subtask_id)
            if sub is not None:
                state = _with_subtask(state, replace(sub, rejected_calls=sub.rejected_calls + 1))
            return _settle_call(
                state,
                event.subtask_id,
                event.call_id,
                event.tool,
                f"ERROR ({event.error_kind}): {event.reason}",
            )
        case ToolCallCompleted():
            in_flight = {k: v for k, v in state.tool_requests.items() if k != event.idempotency_key}
            state = replace(
                state,
                tool_results={**state.tool_results, event.idempotency_key: event.result},
                tool_requests=in_flight,
            )
            content = orjson.dumps(event.result).decode()
            return _settle_call(state, event.subtask_id, event.call_id, event.tool, content)
        case ToolCallFailed():
            in_flight = {k: v for k, v in state.tool_requests.items() if k != event.idempotency_key}
            state = replace(
                state,
                tool_requests=in_flight,
                errors=(
                    *state.errors,
                    f"{event.agent}: tool {event.tool} failed ({event.error_kind}): {event.message}",
                ),
            )
            return _settle_call(
                state,
                event.subtask_id,
                event.call_id,
                event.tool,
                f"ERROR ({event.error_kind}): {event.message}",
            )
        case AgentOutputProduced():
            return _update(state, event.subtask_id, output=event.output)
        case OutputRejected():
            sub = state.subtasks.get(event.subtask_id)
            if sub is None:
                return state
            return _with_subtask(state, replace(sub, repairs=sub.repairs + 1))
        case SubtaskCompleted():
            return _update(state, event.subtask_id, status="completed", output=event.output)
        case SubtaskFailed():
            state = replace(
                state, errors=(*state.errors, f"subtask {event.subtask_id}: {event.reason}")
            )
            return _update(state, event.subtask_id, status="failed", error=event.reason)
        case TaskPlanned():
            subtasks = dict(state.subtasks)
            for planned in event.plan.subtasks:
                subtasks[planned.id] = SubtaskState(
                    id=planned.id,
                    agent=planned.agent,
                    description=planned.description,
                    depends_on=tuple(planned.depends_on),
                )
            return replace(
                state,
                status="running",
                plan=event.plan,
                plan_attempts=event.attempt,
                subtasks=subtasks,
            )
        case PlanRejected():
            return replace(
                state,
                plan_attempts=event.attempt,
                errors=(*state.errors, "plan rejected: " + "; ".join(event.problems)),
            )
        case HandoffAccepted() | HandoffRejected():
            return replace(state, handoffs=evolve_handoffs(state.handoffs, event))
        case SubtaskPlanned():
            subtasks = dict(state.subtasks)
            for planned in event.plan.subtasks:
                sid = nested_id(event.subtask_id, planned.id)
                subtasks[sid] = SubtaskState(
                    id=sid,
                    agent=planned.agent,
                    description=planned.description,
                    depends_on=tuple(nested_id(event.subtask_id, d) for d in planned.depends_on),
                )
            return replace(
                state,
                nested_plans={**state.nested_plans, event.subtask_id: event.plan},
                subtasks=subtasks,
            )
        case SubtaskPlanRejected():
            problems = "; ".join(event.problems)
            return replace(
                state, errors=(*state.errors, f"plan of {event.subtask_id} rejected: {problems}")
            )
        case FailurePolicyApplied():
            if event.action != "fail_task":
                return state
            return replace(state, failing=event)
        case SubtaskSkipped():
            return _update(state, event.subtask_id, status="skipped", output=event.output)
        case ContextSummarized():
            state = replace(
                state,
                llm_calls=state.llm_calls + (1 if event.model else 0),
                tokens_in=state.tokens_in + event.usage.input_tokens,
                tokens_out=state.tokens_out + event.usage.output_tokens,
                cost_usd=round(state.cost_usd + event.cost_usd, 10),
            )
            sub = state.subtasks.get(event.subtask_id)
            if sub is None:
                return state
            turns = compact_turns(sub.turns, event.turns_compacted, event.summary)
            return _with_subtask(
                state, replace(sub, turns=turns, context_tokens=0, context_turns=0)
            )
        case LimitReached():
            note = (
                f"{event.severity}: {event.scope} {event.limit} {event.value:g}/{event.threshold:g}"
            )
            return replace(state, warnings=(*state.warnings, note))
        case (
            ApprovalRequested()
            | ApprovalGranted()
            | ApprovalDenied()
            | ApprovalExpired()
            | ApprovalEscalated()
        ):
            return fold_approval(state, event)
        case UntrustedArgument() if event.action == "approve":
            held = f"{event.subtask_id}/{event.call_id}"
            return replace(state, held_calls=state.held_calls | {held})
        case TaskCompleted():
            return replace(
                state, status="completed", result=event.result, ended_at=event.occurred_at
            )
        case TaskFailed():
            return replace(state, status="failed", failure=event.reason, ended_at=event.occurred_at)
        case TaskCancelled():
            return replace(
                state, status="cancelled", failure=event.reason, ended_at=event.occurred_at
            )
    return state


def fold(task_id: str, events: list[Event]) -> TaskState:
    """Rebuild a task's state from its events (in seq order)."""
    state = TaskState(task_id=task_id)
    for event in events:
        state = evolve(state, event)
    return state
