"""The orchestrator: plans the goal, checks the plan against the graph, schedules subtasks
as their dependencies complete, and ends the task.

Every decision is edge-triggered: it reacts to what *this* event changed (a subtask that
just completed unblocks its own dependents), so handling events concurrently, or twice,
never assigns a subtask twice.
"""

from __future__ import annotations

from pydantic import JsonValue, ValidationError

from agentledger.agents import handoffs
from agentledger.agents.context import ProcessorContext
from agentledger.agents.graph import dag_problems
from agentledger.agents.prompts import PLAN_SUBTASK
from agentledger.projections.task_state import TaskState, evolve
from agentledger.schemas import (
    Event,
    EventBase,
    GoalSubmitted,
    Plan,
    PlanRejected,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
)


def plan_problems(plan: Plan, ctx: ProcessorContext) -> list[str]:
    """Why a plan cannot run on this workflow's graph (empty when it can)."""
    wf = ctx.runtime.workflow
    graph = wf.graph
    problems: list[str] = []
    ids = [s.id for s in plan.subtasks]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"subtask id {dup!r} is used more than once")
    by_id = {s.id: s for s in plan.subtasks}
    for s in plan.subtasks:
        if s.id.startswith("_"):
            problems.append(f"subtask id {s.id!r}: ids starting with '_' are reserved")
        if s.agent not in wf.agents:
            problems.append(f"subtask {s.id!r}: no agent named {s.agent!r} exists in this workflow")
        elif not graph.allows(wf.orchestrator, s.agent):
            problems.append(
                f"subtask {s.id!r}: {wf.orchestrator} may not route work to {s.agent!r}"
            )
        for dep in s.depends_on:
            d = by_id.get(dep)
            if (
                d is not None
                and d.agent in wf.agents
                and s.agent in wf.agents
                and not graph.allows(d.agent, s.agent)
            ):
                problems.append(
                    f"subtask {s.id!r} takes the output of {dep!r}, but the graph has no route "
                    f"{d.agent} -> {s.agent}"
                )
    problems.extend(dag_problems({s.id: s.depends_on for s in plan.subtasks}))
    return problems


def _assign(cause: EventBase, state: TaskState, subtask_id: str) -> SubtaskAssigned:
    sub = state.subtasks[subtask_id]
    inputs: dict[str, JsonValue] = {dep: state.subtasks[dep].output for dep in sub.depends_on}
    return SubtaskAssigned.caused_by(
        cause,
        agent=sub.agent,
        subtask_id=sub.id,
        description=sub.description,
        inputs=inputs,
        depends_on=list(sub.depends_on),
        attempt=sub.attempt + 1,
    )


def _result(state: TaskState, plan: Plan) -> tuple[JsonValue, list[str]]:
    needed = {dep for s in plan.subtasks for dep in s.depends_on}
    sinks = [s.id for s in plan.subtasks if s.id not in needed]
    if len(sinks) == 1:
        return state.subtasks[sinks[0]].output, sinks
    return {sid: state.subtasks[sid].output for sid in sinks}, sinks


class Orchestrator:
    handles = frozenset({"goal_submitted", "subtask_completed", "subtask_failed"})

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
            case GoalSubmitted():
                return [
                    self._plan_assignment(event, state, wf.orchestrator, attempt=1, feedback=None)
                ]
            case SubtaskCompleted() if event.subtask_id == PLAN_SUBTASK:
                return self._on_plan(event, ctx)
            case SubtaskCompleted():
                return self._on_subtask_done(event, state)
            case SubtaskFailed():
                sub = state.subtasks.get(event.subtask_id)
                who = f" ({sub.agent})" if sub else ""
                return [
                    TaskFailed.caused_by(
                        event,
                        agent=wf.orchestrator or event.agent,
                        reason=f"subtask {event.subtask_id}{who} failed: {event.reason}",
                        error_kind=event.error_kind,
                        subtask_id=event.subtask_id,
                    )
                ]
        return []

    def _plan_assignment(
        self,
        cause: EventBase,
        state: TaskState,
        orchestrator: str,
        *,
        attempt: int,
        feedback: list[str] | None,
    ) -> SubtaskAssigned:
        inputs: dict[str, JsonValue] = dict(state.inputs)
        if feedback:
            inputs["previous_plan_problems"] = list(feedback)
        return SubtaskAssigned.caused_by(
            cause,
            agent=orchestrator,
            subtask_id=PLAN_SUBTASK,
            description=f"Plan this goal: {state.goal}",
            inputs=inputs,
            attempt=attempt,
        )

    def _on_plan(self, event: SubtaskCompleted, ctx: ProcessorContext) -> list[EventBase]:
        state, wf = ctx.state, ctx.runtime.workflow
        attempt = state.subtasks[PLAN_SUBTASK].attempt
        try:
            plan = Plan.model_validate(event.output)
            problems = plan_problems(plan, ctx)
        except ValidationError as exc:
            plan = None
            problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:8]]
        if problems or plan is None:
            retry = attempt < wf.limits.max_plan_attempts
            out: list[EventBase] = [
                PlanRejected.caused_by(
                    event,
                    agent=wf.orchestrator,
                    problems=problems,
                    attempt=attempt,
                    will_retry=retry,
                )
            ]
            if retry:
                out.append(
                    self._plan_assignment(
                        event, state, wf.orchestrator, attempt=attempt + 1, feedback=problems
                    )
                )
            else:
                out.append(
                    TaskFailed.caused_by(
                        event,
                        agent=wf.orchestrator,
                        reason=f"no valid plan after {attempt} attempts: " + "; ".join(problems),
                        error_kind="invalid_plan",
                    )
                )
            return out
        planned = TaskPlanned.caused_by(event, agent=wf.orchestrator, plan=plan, attempt=attempt)
        # Assign the roots against the state the plan creates (pure fold of the new event).
        after = evolve(state, planned)
        roots = [s.id for s in plan.subtasks if not s.depends_on]
        return [planned, *(_assign(event, after, sid) for sid in roots)]

    def _on_subtask_done(self, event: SubtaskCompleted, state: TaskState) -> list[EventBase]:
        if state.plan is None:
            return []
        done = {sid for sid, s in state.subtasks.items() if s.status == "completed"}
        ready = [
            s.id
            for s in state.plan.subtasks
            if event.subtask_id in s.depends_on
            and state.subtasks[s.id].status == "pending"
            and all(dep in done for dep in s.depends_on)
        ]
        out: list[EventBase] = [_assign(event, state, sid) for sid in ready]
        if all(state.subtasks[s.id].status == "completed" for s in state.plan.subtasks):
            result, sinks = _result(state, state.plan)
            out.append(
                TaskCompleted.caused_by(
                    event,
                    agent=state.subtasks[PLAN_SUBTASK].agent,
                    result=result,
                    result_subtasks=sinks,
                )
            )
        return out
