"""What a task may spend on model calls: ceilings before a call, prices after it.

Before every model call (``pre_call_stop``): the task-wide ceilings on LLM calls and on
events (``limits.max_llm_calls``, ``limits.max_events``) hold whatever a plan, a repair or
a retry asks for; and a task with a cost budget in ``unpriced_calls: refuse`` mode does not
call a model no price is known for. After it (``PriceTable.quote_response``, ``unpriced_stop``,
``unpriced_warning``): the call is priced where it went (see ``llm/pricing.py``), and an
unpriced call in a task with a cost budget is a warning the first time, or (refuse) a stop.
Each stop is ``limit_reached`` + ``task_failed``, built by ``stops.stop``.
"""

from __future__ import annotations

from agentledger.agents.context import ProcessorContext
from agentledger.agents.stops import stop
from agentledger.llm.base import ModelSettings
from agentledger.llm.pricing import price_endpoint
from agentledger.schemas import EventBase, LimitReached, LlmCallCompleted


def pre_call_stop(
    event: EventBase, ctx: ProcessorContext, model: ModelSettings, model_name: str, subtask_id: str
) -> list[EventBase]:
    """A stop instead of the call, when the call would break a ceiling or the price rule."""
    state, limits = ctx.state, ctx.runtime.workflow.limits
    calls, ceiling = state.llm_calls, limits.llm_call_ceiling
    if calls >= ceiling:
        return stop(
            "task",
            event,
            limit="llm_calls",
            scope="task",
            value=calls + 1,
            threshold=ceiling,
            subtask_id=subtask_id,
            detail=f"call {calls + 1} refused: the task may make {ceiling} LLM calls",
            reason=f"task ceiling reached: {calls} of {ceiling} LLM calls used (limits.max_llm_calls)",
            error_kind="llm_call_ceiling",
        )
    events, most = state.last_seq, limits.event_ceiling
    if events >= most:
        return stop(
            "task",
            event,
            limit="events",
            scope="task",
            value=events,
            threshold=most,
            subtask_id=subtask_id,
            detail=f"{events} events recorded; the task may record {most}",
            reason=f"task ceiling reached: {events} events recorded, the ceiling is {most} "
            "(limits.max_events)",
            error_kind="event_ceiling",
        )
    provider, base_url = price_endpoint(model)
    if (
        limits.max_cost_usd is not None
        and limits.unpriced_policy == "refuse"
        and provider != "azure"  # priced by the model the response reports: checked after
        and not ctx.runtime.prices.known(model_name, provider=provider, base_url=base_url)
    ):
        return _unpriced_refusal(
            event, ctx, model_name, subtask_id, "call refused before it was made"
        )
    return []


def unpriced_stop(event: LlmCallCompleted, ctx: ProcessorContext) -> list[EventBase]:
    """``refuse`` mode: an unpriced answer (an Azure model the table does not know) ends a
    task that has a cost budget, since the budget can no longer be kept."""
    limits = ctx.runtime.workflow.limits
    if not event.unpriced or limits.max_cost_usd is None or limits.unpriced_policy != "refuse":
        return []
    name = event.priced_as or event.model
    return _unpriced_refusal(event, ctx, name, event.subtask_id, "the call was made; no more are")


def unpriced_warning(event: LlmCallCompleted, ctx: ProcessorContext) -> list[EventBase]:
    """``warn`` mode: the task's first unpriced call under a cost budget is a warning."""
    limits = ctx.runtime.workflow.limits
    if not event.unpriced or limits.max_cost_usd is None or ctx.state.unpriced_calls != 1:
        return []
    name = event.priced_as or event.model
    return [
        LimitReached.caused_by(
            event,
            limit="unpriced_calls",
            scope="task",
            severity="warning",
            value=1,
            threshold=0,
            subtask_id=event.subtask_id,
            detail=f"no price is known for model {name!r} ({event.provider}): its calls count "
            f"0 against max_cost_usd {limits.max_cost_usd:g}; declare its price in the "
            "workflow's prices: block or the prices file, or set limits.unpriced_calls: refuse",
        )
    ]


def _unpriced_refusal(
    event: EventBase, ctx: ProcessorContext, model_name: str, subtask_id: str, what: str
) -> list[EventBase]:
    limits = ctx.runtime.workflow.limits
    return stop(
        "task",
        event,
        limit="unpriced_calls",
        scope="task",
        value=1,
        threshold=0,
        subtask_id=subtask_id,
        detail=f"no price is known for model {model_name!r}; {what}",
        reason=f"model {model_name!r} has no known price and the task has a cost budget "
        f"(max_cost_usd {limits.max_cost_usd:g}, unpriced_calls: refuse); declare its price "
        "in the workflow's prices: block or the prices file",
        error_kind="unpriced_model",
    )
