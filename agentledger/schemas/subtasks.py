"""Subtask lifecycle events: assignment, agent steps, output, completion."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from agentledger.schemas.envelope import EventBase


class SubtaskAssigned(EventBase):
    """A subtask is given to an agent, with exactly the inputs it declared it depends on."""

    type: Literal["subtask_assigned"] = "subtask_assigned"
    subtask_id: str
    description: str
    inputs: dict[str, JsonValue] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    attempt: int = 1


class AgentStepStarted(EventBase):
    """One iteration of an agent's loop begins: the next thing to happen is an LLM call."""

    type: Literal["agent_step_started"] = "agent_step_started"
    subtask_id: str
    iteration: int = Field(ge=1)
    feedback: str | None = None  # e.g. why the previous output was rejected


class AgentOutputProduced(EventBase):
    """The agent's final output for a subtask, already validated against its contract."""

    type: Literal["agent_output_produced"] = "agent_output_produced"
    subtask_id: str
    output: JsonValue
    output_model: str | None = None


class OutputRejected(EventBase):
    """The agent's output broke its declared contract; it gets the errors and may repair."""

    type: Literal["output_rejected"] = "output_rejected"
    subtask_id: str
    errors: list[str]
    raw_output: str
    will_retry: bool


class SubtaskCompleted(EventBase):
    type: Literal["subtask_completed"] = "subtask_completed"
    subtask_id: str
    output: JsonValue


class SubtaskFailed(EventBase):
    type: Literal["subtask_failed"] = "subtask_failed"
    subtask_id: str
    reason: str
    error_kind: str
