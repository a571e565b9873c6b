"""Plans and planning scopes, shared by the task's orchestrator and sub-orchestrators.

A *scope* is one level of planning: the task itself (key ``""``, planned by the workflow's
orchestrator) or a subtask given to a sub-orchestrator (key ``research``, planned by that
subtask's agent). Each scope has its own planning subtasks (``_plan``, then ``_replan1``,
``_replan2`` ... after failures; ``research/_plan`` nested), its own plan, and its own
members (``research/a`` for a nested plan's subtask ``a``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, JsonValue, ValidationError

from agentledger.agents.graph import dag_problems
from agentledger.projections.task_state import ACTIVE, DONE, TaskState, evolve
from agentledger.schemas import (
    EventBase,
    Plan,
    PlanClamp,
    PlanClamped,
    PlannedSubtask,
    PlanRejected,
    SubtaskAssigned,
    SubtaskCompleted,
    SubtaskFailed,
    SubtaskPlanned,
    SubtaskPlanRejected,
    TaskCompleted,
    TaskFailed,
    TaskPlanned,
)
from agentledger.schemas.hierarchy import nested_id, parent_of

if TYPE_CHECKING:
    from agentledger.agents.workflow import AgentSpec, Workflow

PLAN_SUBTASK = "_plan"
"""The planning subtask of a scope's first plan. Planned ids may not start with '_'."""

_PLANNING = re.compile(r"^_(?:plan|replan[1-9][0-9]*)$")


def is_plan_subtask(subtask_id: str) -> bool:
    """Whether a subtask is a planner's (``_plan``, ``_replan2``, ``research/_plan`` ...)."""
    return bool(_PLANNING.match(subtask_id.rpartition("/")[2]))


def plan_round(subtask_id: str) -> int:
    """1 for ``_plan``, n + 1 for ``_replan<n>``."""
    local = subtask_id.rpartition("/")[2]
    return 1 if local == PLAN_SUBTASK else int(local.removeprefix("_replan")) + 1


def delegates(wf: Workflow, agent: str, subtask_id: str) -> bool:
    """Whether a subtask is worked by a nested plan rather than by its agent's own steps."""
    spec = wf.agents.get(agent)
    return spec is not None and spec.orchestrates and not is_plan_subtask(subtask_id)


def running(state: TaskState, wf: Workflow) -> list[str]:
    """Subtasks whose work is still under way (a delegated subtask runs through its members)."""
    return [
        s.id
        for s in state.subtasks.values()
        if s.status in ACTIVE and not delegates(wf, s.agent, s.id)
    ]


@dataclass(frozen=True)
class Scope:
    key: str  # "" for the task's own plan, else the subtask a sub-orchestrator plans
    planner: str

    @classmethod
    def of(cls, subtask_id: str, state: TaskState, wf: Workflow) -> Scope:
        """The scope a subtask (or planning subtask) belongs to."""
        key = parent_of(subtask_id)
        parent = state.subtasks.get(key)
        return cls(key, parent.agent if key and parent else wf.orchestrator)

    @property
    def level(self) -> int:
        return 1 if not self.key else self.key.count("/") + 2

    @property
    def what(self) -> str:
        return "the task" if not self.key else f"subtask {self.key}"

    def full(self, local: str) -> str:
        return nested_id(self.key, local)

    def plan_subtask(self, round_: int) -> str:
        return self.full(PLAN_SUBTASK if round_ == 1 else f"_replan{round_ - 1}")

    def plan(self, state: TaskState) -> Plan | None:
        return state.plan if not self.key else state.nested_plans.get(self.key)

    def members(self, state: TaskState) -> list[str]:
        """The subtasks of the scope's current plan."""
        plan = self.plan(state)
        return [self.full(s.id) for s in plan.subtasks] if plan else []

    def entry(self, state: TaskState, subtask_id: str) -> PlannedSubtask | None:
        plan = self.plan(state)
        local = subtask_id.rpartition("/")[2]
        return next((s for s in plan.subtasks if s.id == local), None) if plan else None

    def active(self, state: TaskState) -> bool:
        """Still worth working on: the task is not over, and a nested scope's subtask is open."""
        if state.terminal:
            return False
        parent = state.subtasks.get(self.key)
        return not self.key or (parent is not None and parent.status in ACTIVE)

    def _planning(self, state: TaskState) -> list[str]:
        return [
            sid for sid in state.subtasks if is_plan_subtask(sid) and parent_of(sid) == self.key
        ]

    def replans(self, state: TaskState) -> int:
        """How many re-plans this scope has started (a static plan has no ``_plan`` round)."""
        return sum(1 for sid in self._planning(state) if plan_round(sid) > 1)

    def replanning(self, state: TaskState) -> bool:
        """A re-plan is under way: the old plan's remaining work is not scheduled further."""
        return any(state.subtasks[sid].status != "completed" for sid in self._planning(state))

    def brief(self, state: TaskState) -> tuple[str, dict[str, JsonValue]]:
        """What the planner of this scope is asked to plan, and with which inputs."""
        parent = state.subtasks.get(self.key)
        if parent is None:
            return f"Plan this goal: {state.goal}", dict(state.inputs)
        return f"Plan this subtask for your team: {parent.description}", dict(parent.inputs)

    def reusable(self, state: TaskState) -> dict[str, str]:
        """Completed (or skipped) subtasks a re-plan may build on: local id -> agent."""
        return {
            s.id.rpartition("/")[2]: s.agent
            for s in state.subtasks.values()
            if s.status in DONE and parent_of(s.id) == self.key and not is_plan_subtask(s.id)
        }

    def taken(self, state: TaskState) -> set[str]:
        """Local ids already used in this scope: a new plan must use others."""
        return {sid.rpartition("/")[2] for sid in state.subtasks if parent_of(sid) == self.key}


def plan_problems(
    plan: Plan,
    wf: Workflow,
    planner: str,
    *,
    reusable: Mapping[str, str] | None = None,
    taken: Collection[str] = (),
) -> list[str]:
    """Why ``planner``'s plan cannot run on the workflow's graph (empty when it can).

    ``reusable`` (local id -> agent) are completed subtasks a re-plan may depend on;
    ``taken`` are ids already used in the scope, which a new plan may not reuse.
    """
    reusable = reusable or {}
    graph = wf.graph
    problems: list[str] = []
    ids = [s.id for s in plan.subtasks]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"subtask id {dup!r} is used more than once")
    by_id = {s.id: s for s in plan.subtasks}
    for s in plan.subtasks:
        if s.id.startswith("_"):
            problems.append(f"subtask id {s.id!r}: ids starting with '_' are reserved")
        elif s.id in taken:
            problems.append(
                f"subtask id {s.id!r} is already used in this task: give new work a new id "
                "(completed subtasks are depended on by their id)"
            )
        spec = wf.agents.get(s.agent)
        if spec is None:
            problems.append(f"subtask {s.id!r}: no agent named {s.agent!r} exists in this workflow")
        elif not graph.allows(planner, s.agent):
            problems.append(f"subtask {s.id!r}: {planner} may not route work to {s.agent!r}")
        else:
            problems.extend(_override_problems(s, spec))
        for dep in s.depends_on:
            dep_agent = by_id[dep].agent if dep in by_id else reusable.get(dep)
            if dep not in by_id and dep in taken and dep not in reusable:
                problems.append(
                    f"subtask {s.id!r} depends on {dep!r}, which has not completed: a new plan "
                    "can build only on completed subtasks"
                )
            elif (
                dep_agent is not None
                and dep_agent in wf.agents
                and spec is not None
                and not graph.allows(dep_agent, s.agent)
            ):
                problems.append(
                    f"subtask {s.id!r} takes the output of {dep!r}, but the graph has no route "
                    f"{dep_agent} -> {s.agent}"
                )
    nodes = {s.id: [d for d in s.depends_on if d not in taken] for s in plan.subtasks}
    problems.extend(dag_problems(nodes))
    return problems


def _override_problems(s: PlannedSubtask, spec: AgentSpec) -> list[str]:
    problems = []
    policy = s.on_failure or spec.on_failure
    if spec.orchestrates and policy == "retry":
        problems.append(
            f"subtask {s.id!r}: {spec.name} orchestrates a nested plan and cannot be retried; "
            "use replan, skip or fail_task"
        )
    if policy == "skip":
        default = s.default if "default" in s.model_fields_set else spec.default_output
        problem = default_problem(default, spec.output_model)
        if problem:
            problems.append(f"subtask {s.id!r}: default {problem}")
    return problems


def clamp_plan(plan: Plan, wf: Workflow) -> tuple[Plan, list[PlanClamp]]:
    """``plan`` within what the workflow lets a planner set, and what was cut.

    A planned subtask's ``max_retries`` stays at or below its agent's; its ``on_failure``
    must be one of the agent's ``plan_on_failure`` (else the agent's own policy stands, and
    a ``default`` goes with a refused ``skip`` unless the agent's own policy is skip).
    Agents the workflow does not have are left to ``plan_problems``.
    """
    clamps: list[PlanClamp] = []
    subtasks: list[PlannedSubtask] = []
    for s in plan.subtasks:
        spec = wf.agents.get(s.agent)
        if spec is None:
            subtasks.append(s)
            continue
        data = s.model_dump(mode="json")
        if s.max_retries is not None and s.max_retries > spec.max_retries:
            data["max_retries"] = spec.max_retries
            clamps.append(
                PlanClamp(
                    subtask=s.id,
                    setting="max_retries",
                    asked=s.max_retries,
                    allowed=spec.max_retries,
                    reason=f"agent {spec.name!r} allows at most {spec.max_retries} retries",
                )
            )
        if s.on_failure is not None and s.on_failure not in spec.plan_on_failure:
            del data["on_failure"]
            clamps.append(
                PlanClamp(
                    subtask=s.id,
                    setting="on_failure",
                    asked=s.on_failure,
                    allowed=spec.on_failure,
                    reason=f"a plan may give {spec.name!r} only "
                    f"{', '.join(spec.plan_on_failure)}; its own policy stands",
                )
            )
            if "default" in data and spec.on_failure != "skip":
                clamps.append(
                    PlanClamp(
                        subtask=s.id,
                        setting="default",
                        asked=data.pop("default"),
                        allowed=None,
                        reason=f"the subtask cannot be skipped ({spec.on_failure}): "
                        "no default is used",
                    )
                )
        changed = data != s.model_dump(mode="json")
        subtasks.append(PlannedSubtask.model_validate(data) if changed else s)
    if not clamps:
        return plan, []
    return plan.model_copy(update={"subtasks": subtasks}), clamps


def clamped_event(cause: EventBase, scope: Scope, clamps: list[PlanClamp]) -> list[EventBase]:
    """``[plan_clamped]`` when something was cut, else nothing."""
    if not clamps:
        return []
    return [PlanClamped.caused_by(cause, agent=scope.planner, subtask_id=scope.key, clamps=clamps)]


def default_problem(default: object, output_model: type[BaseModel] | None) -> str | None:
    """Why a skip default does not satisfy the agent's output contract (None if it does)."""
    if output_model is None:
        return None
    try:
        output_model.model_validate(default)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        return f"does not match {output_model.__name__}: {where}: {err['msg']}"
    return None


# --- the events a scope's decisions produce -----------------------------------------------


def planned_event(
    cause: EventBase, scope: Scope, plan: Plan, attempt: int
) -> TaskPlanned | SubtaskPlanned:
    if not scope.key:
        return TaskPlanned.caused_by(cause, agent=scope.planner, plan=plan, attempt=attempt)
    return SubtaskPlanned.caused_by(
        cause,
        agent=scope.planner,
        subtask_id=scope.key,
        level=scope.level,
        plan=plan,
        attempt=attempt,
    )


def rejected_event(
    cause: EventBase, scope: Scope, problems: list[str], attempt: int, will_retry: bool
) -> EventBase:
    if not scope.key:
        return PlanRejected.caused_by(
            cause, agent=scope.planner, problems=problems, attempt=attempt, will_retry=will_retry
        )
    return SubtaskPlanRejected.caused_by(
        cause,
        agent=scope.planner,
        subtask_id=scope.key,
        level=scope.level,
        problems=problems,
        attempt=attempt,
        will_retry=will_retry,
    )


def completed_event(cause: EventBase, scope: Scope, state: TaskState, plan: Plan) -> EventBase:
    """The task's (or the delegated subtask's) result: its sink subtask's output, or a map
    of the sinks' outputs by (local) id."""
    needed = {dep for s in plan.subtasks for dep in s.depends_on}
    sinks = [s.id for s in plan.subtasks if s.id not in needed]
    outputs = {sid: state.subtasks[scope.full(sid)].output for sid in sinks}
    result: JsonValue = outputs[sinks[0]] if len(sinks) == 1 else outputs
    if not scope.key:
        return TaskCompleted.caused_by(
            cause, agent=scope.planner, result=result, result_subtasks=sinks
        )
    return SubtaskCompleted.caused_by(
        cause, agent=scope.planner, subtask_id=scope.key, output=result
    )


def failed_event(
    cause: EventBase, scope: Scope, reason: str, error_kind: str, subtask_id: str | None
) -> EventBase:
    """The scope fails: the task, or (nested) the delegated subtask, whose policy then decides."""
    if not scope.key:
        return TaskFailed.caused_by(
            cause,
            agent=scope.planner,
            reason=reason,
            error_kind=error_kind,
            subtask_id=subtask_id,
        )
    return SubtaskFailed.caused_by(
        cause, agent=scope.planner, subtask_id=scope.key, reason=reason, error_kind=error_kind
    )


def failure_reason(state: TaskState, subtask_id: str, reason: str) -> str:
    sub = state.subtasks.get(subtask_id)
    who = f" ({sub.agent})" if sub else ""
    return f"subtask {subtask_id}{who} failed: {reason}"


def plan_assignment(
    cause: EventBase,
    scope: Scope,
    *,
    round_: int,
    attempt: int,
    description: str,
    inputs: Mapping[str, JsonValue],
) -> SubtaskAssigned:
    """Ask the scope's planner for a plan (round 1), or a new one after a failure."""
    return SubtaskAssigned.caused_by(
        cause,
        agent=scope.planner,
        subtask_id=scope.plan_subtask(round_),
        description=description,
        inputs=dict(inputs),
        attempt=attempt,
    )


def assign(cause: EventBase, state: TaskState, wf: Workflow, subtask_id: str) -> list[EventBase]:
    """Assign a planned subtask with exactly the outputs it depends on (a nested plan's
    roots get what their sub-orchestrator was given). A sub-orchestrator's subtask is
    delegated: its planner is asked for a nested plan at once."""
    sub = state.subtasks[subtask_id]
    scope = Scope.of(subtask_id, state, wf)
    inputs: dict[str, JsonValue]
    if sub.depends_on:
        inputs = {dep: state.subtasks[dep].output for dep in sub.depends_on}
    elif scope.key:
        inputs = dict(state.subtasks[scope.key].inputs)
    else:
        inputs = {}
    assigned = SubtaskAssigned.caused_by(
        cause,
        agent=sub.agent,
        subtask_id=sub.id,
        description=sub.description,
        inputs=inputs,
        depends_on=list(sub.depends_on),
        attempt=sub.attempt + 1,
    )
    if not delegates(wf, sub.agent, sub.id):
        return [assigned]
    nested = Scope(sub.id, sub.agent)
    description, _ = nested.brief(evolve(state, assigned))
    return [
        assigned,
        plan_assignment(cause, nested, round_=1, attempt=1, description=description, inputs=inputs),
    ]
