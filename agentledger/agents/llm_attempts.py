"""A model call's attempt trail, as events.

The model reports what happened before its answer (or its final failure) as
``AttemptNote``s; the agent step records them as ``llm_attempt_failed``,
``llm_output_mode_lowered`` and ``llm_fallback_used`` events in the same reaction batch as
the ``llm_call_completed`` / ``llm_call_failed``, all caused by the event that made the call.
The batch is appended as one, so a resumed task sees either the call and its attempts or
neither (and then makes the call again): "handled exactly when another event names it as
its cause" keeps holding.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.llm.base import AttemptNote
from agentledger.schemas import EventBase, LlmAttemptFailed, LlmFallbackUsed, LlmOutputModeLowered


def attempt_events(
    cause: EventBase,
    notes: Sequence[object],
    *,
    subtask_id: str,
    iteration: int,
    provider: str,
) -> list[EventBase]:
    """One compact event per note, in the order they happened."""
    out: list[EventBase] = []
    for note in notes:
        if not isinstance(note, AttemptNote):
            continue
        where = {"subtask_id": subtask_id, "iteration": iteration, "provider": provider}
        if note.kind == "failed":
            out.append(
                LlmAttemptFailed.caused_by(
                    cause,
                    **where,
                    model=note.model,
                    attempt=max(1, note.attempt),
                    error_kind=note.error_kind or "model_error",
                    status_code=note.status_code,
                    retry_after_s=note.retry_after_s,
                    delay_s=note.delay_s,
                    message=note.detail[:300],
                )
            )
        elif note.kind == "step_down":
            out.append(
                LlmOutputModeLowered.caused_by(
                    cause,
                    **where,
                    model=note.model,
                    attempt=max(1, note.attempt),
                    from_mode=note.from_mode,
                    to_mode=note.to_mode,
                    reason=note.detail[:300],
                )
            )
        else:
            out.append(
                LlmFallbackUsed.caused_by(
                    cause,
                    **where,
                    from_model=note.model,
                    to_model=note.to_model,
                    error_kind=note.error_kind or "model_error",
                    reason=note.detail[:300],
                )
            )
    return out
