"""The handoffs of a peer-to-peer task, as the log says: the part of TaskState they need.

Kept apart from ``task_state`` so the peer-to-peer rules (hop cap, oscillation, bounded
refusals) read one small value: the accepted hops in order, and how many handoffs of each
subtask were refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from agentledger.schemas import HandoffAccepted, HandoffRejected


@dataclass(frozen=True, slots=True)
class Hop:
    from_agent: str
    to_agent: str


@dataclass(frozen=True, slots=True)
class HandoffLog:
    hops: tuple[Hop, ...] = ()
    rejections: Mapping[str, int] = field(default_factory=dict)  # by subtask id

    def path(self) -> list[str]:
        """The agents the work went through, in order (empty before the first handoff)."""
        if not self.hops:
            return []
        return [self.hops[0].from_agent, *(h.to_agent for h in self.hops)]


def evolve_handoffs(log: HandoffLog, event: HandoffAccepted | HandoffRejected) -> HandoffLog:
    if isinstance(event, HandoffAccepted):
        return replace(log, hops=(*log.hops, Hop(event.from_agent, event.to_agent)))
    count = log.rejections.get(event.subtask_id, 0) + 1
    return replace(log, rejections={**log.rejections, event.subtask_id: count})
