"""Failure policies: what the orchestrator does when a planned subtask fails.

Per agent (``on_failure``, ``max_retries``, ``default``), overridable per planned subtask:

* ``fail_task`` (default) - the failure is final. In the task's own plan the task fails;
  subtasks still running are cancelled, or finish first when the workflow says
  ``running_branches_on_failure: finish`` (their outputs stay in the state). Inside a
  nested plan the sub-orchestrator's subtask fails instead, and its own policy decides.
* ``retry`` - assign the subtask again, up to ``max_retries`` times, then ``fail_task``.
* ``replan`` - ask the scope's planner for a new plan, given the failure and the outputs
  already completed (which the new plan may depend on), up to ``limits.max_replans``.
* ``skip`` - mark the subtask skipped; dependents get its ``default`` output.

Every decision is a ``failure_policy_applied`` event with the numbers behind it.
"""

from __future__ import annotations

from agentledger.agents.plans import (
    Scope,
    assign,
    failed_event,
    failure_reason,
    is_plan_subtask,
    plan_assignment,
    running,
)
from agentledger.agents.workflow import Workflow
from agentledger.projections.task_state import TaskState
from agentledger.schemas import (
    EventBase,
    FailureAction,
    FailurePolicyApplied,
    SubtaskFailed,
    SubtaskSkipped,
    TaskFailed,
)


def on_subtask_failed(event: SubtaskFailed, state: TaskState, wf: Workflow) -> list[EventBase]:
    sid = event.subtask_id
    scope = Scope.of(sid, state, wf)
    if state.failing is not None:
        return fail_if_idle(event, state, wf)
    if not scope.active(state):
        return []
    if is_plan_subtask(sid):  # the planner itself could not answer: nothing to plan with
        reason = failure_reason(state, sid, event.reason)
        return [failed_event(event, scope, reason, event.error_kind, sid)]
    sub = state.subtasks.get(sid)
    entry = scope.entry(state, sid)
    if sub is None or entry is None or sid not in scope.members(state) or scope.replanning(state):
        return []  # work of a plan that was replaced: its outcome no longer matters
    spec = wf.agents[sub.agent]
    policy = entry.on_failure or spec.on_failure

    def applied(action: FailureAction, detail: str, **extra: object) -> FailurePolicyApplied:
        return FailurePolicyApplied.caused_by(
            event,
            agent=scope.planner,
            subtask_id=sid,
            policy=policy,
            action=action,
            attempt=sub.attempt,
            error_kind=event.error_kind,
            reason=event.reason,
            detail=detail,
            **extra,
        )

    if policy == "retry":
        # The recorded plan is already clamped; min() also bounds plans logged before that.
        limit = (
            min(entry.max_retries, spec.max_retries)
            if entry.max_retries is not None
            else spec.max_retries
        )
        if sub.attempt <= limit:
            return [
                applied("retry", f"retry {sub.attempt} of {limit}"),
                *assign(event, state, wf, sid),
            ]
        detail = f"no retries left ({limit} of {limit} used)"
    elif policy == "skip":
        default = entry.default if "default" in entry.model_fields_set else spec.default_output
        return [
            applied("skip", "skipped: dependents get the default output"),
            SubtaskSkipped.caused_by(
                event, agent=sub.agent, subtask_id=sid, output=default, reason=event.reason
            ),
        ]
    elif policy == "replan":
        used, limit = scope.replans(state), wf.limits.max_replans
        if used < limit:
            return [
                applied("replan", f"re-plan {used + 1} of {limit}"),
                _replan(event, state, scope, round_=used + 2),
            ]
        detail = f"no re-plans left ({limit} of {limit} used)"
    else:
        detail = "the subtask is required"
    reason = failure_reason(state, sid, event.reason)
    if scope.key:
        return [
            applied("fail_parent", f"{detail}; {scope.key} fails"),
            failed_event(event, scope, reason, event.error_kind, sid),
        ]
    others = [r for r in running(state, wf) if r != sid]
    mode = wf.running_branches_on_failure
    decision = applied(
        "fail_task",
        detail if not others else f"{detail}; running branches: {mode}",
        running=others,
        running_branches=mode,
    )
    if mode == "finish" and others:
        return [decision]
    return [decision, failed_event(event, scope, reason, event.error_kind, sid)]


def fail_if_idle(cause: EventBase, state: TaskState, wf: Workflow) -> list[EventBase]:
    """A failing task fails once none of its branches is running any more."""
    failing = state.failing
    if failing is None or running(state, wf):
        return []
    return [
        TaskFailed.caused_by(
            cause,
            agent=wf.orchestrator,
            reason=failure_reason(state, failing.subtask_id, failing.reason),
            error_kind=failing.error_kind,
            subtask_id=failing.subtask_id,
        )
    ]


def _replan(event: SubtaskFailed, state: TaskState, scope: Scope, *, round_: int) -> EventBase:
    description, base = scope.brief(state)
    failed = event.subtask_id.rpartition("/")[2]
    completed = {sid: state.subtasks[scope.full(sid)].output for sid in scope.reusable(state)}
    return plan_assignment(
        event,
        scope,
        round_=round_,
        attempt=1,
        description=(
            f"Re-plan after subtask {failed!r} failed. {description}. The subtasks in "
            "`completed` are done: depend on them by id, and give new work new ids."
        ),
        inputs={**base, "failed_subtask": failed, "failure": event.reason, "completed": completed},
    )
