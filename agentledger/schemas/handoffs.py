"""Peer-to-peer handoffs and swarm aggregation: the events, and the handoff an agent asks for.

In a ``peer_to_peer`` workflow an agent hands its work on by filling the reserved
``handoff`` field of its final JSON answer (:class:`HandoffRequest`). The runtime accepts
it only along a route the graph declares (``handoff_accepted``), refuses it otherwise
(``handoff_rejected``, the agent is told why), and a swarm's aggregator records how it
combined its candidates (``outputs_aggregated``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.schemas.envelope import EventBase

HANDOFF_FIELD = "handoff"
"""The reserved field of a peer-to-peer agent's final answer that names the next agent."""


class HandoffRequest(BaseModel):
    """What an agent writes under ``handoff`` to pass its work (its answer) to another agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: str = Field(min_length=1, description="the agent to hand the work to")
    note: str = Field(default="", description="what the next agent should do with it")


class HandoffAccepted(EventBase):
    """Work moves from one agent to another along a declared route; ``hop`` counts from 1."""

    type: Literal["handoff_accepted"] = "handoff_accepted"
    from_agent: str
    to_agent: str
    hop: int = Field(ge=1)
    from_subtask: str
    to_subtask: str
    note: str = ""


class HandoffRejected(EventBase):
    """A handoff the graph does not declare was refused; the agent may correct it or fails."""

    type: Literal["handoff_rejected"] = "handoff_rejected"
    subtask_id: str
    from_agent: str
    to_agent: str
    error_kind: Literal["unknown_agent", "undeclared_route"]
    reason: str
    rejection: int = Field(ge=1)  # how many handoffs of this subtask were refused so far
    will_retry: bool


class Vote(BaseModel):
    """One distinct value of a majority vote, with the candidates that gave it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: JsonValue
    count: int = Field(ge=1)
    candidates: list[str]


class OutputsAggregated(EventBase):
    """An aggregator combined the outputs of the subtasks it depends on (its candidates)."""

    type: Literal["outputs_aggregated"] = "outputs_aggregated"
    subtask_id: str
    method: Literal["majority_vote", "judge", "score_average"]
    field: str | None = None
    candidates: list[str]
    values: dict[str, JsonValue] = Field(default_factory=dict)  # candidate -> its field value
    votes: list[Vote] = Field(default_factory=list)  # majority_vote: most votes first
    winner: str | None = None  # the candidate whose output is the result
    result: JsonValue = None
    detail: str = ""
