"""The orchestrator: plans the goal, checks the plan against the graph, schedules subtasks
as their dependencies complete, and ends the task.

The same rules run at every level of planning (a ``Scope``, see plans.py): the task's own
plan, and the nested plan a sub-orchestrator makes for a subtask it was given. A workflow
may declare the task's plan (``plan:``) instead of asking the orchestrator for one.
What happens when a subtask fails is its failure policy's decision (failure.py).

Every decision is edge-triggered: it reacts to what *this* event changed (a subtask that
just completed unblocks its own dependents), so handling events concurrently, or twice,
never assigns a subtask twice.
"""

from __future__ import annotations

from pydantic import JsonValue, ValidationError

from agentledger.agents import handoffs, plans
from agentledger.agents.context import ProcessorContext
from agentledger.agents.failure import fail_if_idle, on_subtask_failed
from agentledger.agents.plans import Scope, assign, is_plan_subtask, plan_round
from agentledger.agents.workflow import Workflow
from agentledger.projections.task_state import DONE, TaskState, evolve
from agentledger.schemas import (
    Event,
    EventBase,
    FailurePolicyApplied,
    GoalSubmitted,
    Plan,
    PlanClamp,
    SubtaskCompleted,
    SubtaskFailed,
    SubtaskSkipped,
)


def plan_problems(plan: Plan, ctx: ProcessorContext) -> list[str]:
    """Why a plan for the task cannot run on this workflow's graph (empty when it can)."""
    wf = ctx.runtime.workflow
    return plans.plan_problems(plan, wf, wf.orchestrator)


class Orchestrator:
    handles = frozenset(
        {
            "goal_submitted",
            "subtask_completed",
            "subtask_failed",
            "subtask_skipped",
            "failure_policy_applied",
        }
    )

    async def handle(self, event: Event, ctx: ProcessorContext) -> list[EventBase]:
        state = ctx.state
        if state.terminal and not isinstance(event, GoalSubmitted):
            return []
        wf = ctx.runtime.workflow
        match event:
            case GoalSubmitted() if wf.pattern == "peer_to_peer":
                return handoffs.start(event, ctx)
            case SubtaskCompleted() if wf.pattern == "peer_to_peer":
                return handoffs.on_completed(event, ctx)
            case SubtaskFailed() if wf.pattern == "peer_to_peer":
                return handoffs.on_failed(event, ctx)
            case GoalSubmitted():
                return self._start(event, state, wf)
            case SubtaskCompleted() if is_plan_subtask(event.subtask_id):
                return self._on_plan(event, state, wf)
            case SubtaskCompleted() | SubtaskSkipped():
                return self._on_subtask_done(event, state, wf)
            case SubtaskFailed():
                return on_subtask_failed(event, state, wf)
            case FailurePolicyApplied() if event.action == "fail_task":
                return fail_if_idle(event, state, wf)
        return []

    def _start(self, event: GoalSubmitted, state: TaskState, wf: Workflow) -> list[EventBase]:
        scope = Scope("", wf.orchestrator)
        if wf.plan is not None:  # a static plan, validated when the workflow was loaded
            return self._accept(event, state, wf, scope, wf.plan, attempt=1)
        description, inputs = scope.brief(state)
        return [
            plans.plan_assignment(
                event, scope, round_=1, attempt=1, description=description, inputs=inputs
            )
        ]

    def _accept(
        self,
        cause: EventBase,
        state: TaskState,
        wf: Workflow,
        scope: Scope,
        plan: Plan,
        *,
        attempt: int,
    ) -> list[EventBase]:
        planned = plans.planned_event(cause, scope, plan, attempt)
        # Assign what can start against the state the plan creates (a pure fold of it).
        after = evolve(state, planned)
        ready = [
            sid
            for sid in scope.members(after)
            if all(after.subtasks[dep].status in DONE for dep in after.subtasks[sid].depends_on)
        ]
        return [planned, *(e for sid in ready for e in assign(cause, after, wf, sid))]

    def _on_plan(self, event: SubtaskCompleted, state: TaskState, wf: Workflow) -> list[EventBase]:
        scope = Scope.of(event.subtask_id, state, wf)
        if not scope.active(state):
            return []
        sub = state.subtasks[event.subtask_id]
        clamps: list[PlanClamp] = []
        try:
            plan: Plan | None = Plan.model_validate(event.output)
            assert plan is not None
            plan, clamps = plans.clamp_plan(plan, wf)
            problems = plans.plan_problems(
                plan, wf, scope.planner, reusable=scope.reusable(state), taken=scope.taken(state)
            )
        except ValidationError as exc:
            plan = None
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:8]]
        if plan is not None and not problems:
            return [
                *plans.clamped_event(event, scope, clamps),
                *self._accept(event, state, wf, scope, plan, attempt=sub.attempt),
            ]
        retry = sub.attempt < wf.limits.max_plan_attempts
        out: list[EventBase] = [
            plans.rejected_event(event, scope, problems, sub.attempt, will_retry=retry)
        ]
        if retry:
            inputs: dict[str, JsonValue] = {**sub.inputs, "previous_plan_problems": list(problems)}
            out.append(
                plans.plan_assignment(
                    event,
                    scope,
                    round_=plan_round(sub.id),
                    attempt=sub.attempt + 1,
                    description=sub.description,
                    inputs=inputs,
                )
            )
        else:
            reason = f"no valid plan after {sub.attempt} attempts: " + "; ".join(problems)
            out.append(plans.failed_event(event, scope, reason, "invalid_plan", None))
        return out

    def _on_subtask_done(
        self, event: SubtaskCompleted | SubtaskSkipped, state: TaskState, wf: Workflow
    ) -> list[EventBase]:
        if state.failing is not None:  # no new work: wait for the running branches
            return fail_if_idle(event, state, wf)
        sid = event.subtask_id
        scope = Scope.of(sid, state, wf)
        plan = scope.plan(state)
        members = scope.members(state)
        if plan is None or sid not in members or not scope.active(state) or scope.replanning(state):
            return []
        subs = state.subtasks
        ready = [
            m
            for m in members
            if sid in subs[m].depends_on
            and subs[m].status == "pending"
            and all(subs[dep].status in DONE for dep in subs[m].depends_on)
        ]
        out: list[EventBase] = [e for m in ready for e in assign(event, state, wf, m)]
        if all(subs[m].status in DONE for m in members):
            out.append(plans.completed_event(event, scope, state, plan))
        return out
