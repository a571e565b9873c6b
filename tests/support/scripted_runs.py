"""Scripted answers and a small side-effecting workflow that several unit tests share."""

from __future__ import annotations

from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.llm import ModelRequest, ModelResponse, reply, reply_json
from agentledger.schemas import RecordedToolCall
from agentledger.tools import ToolContext, tool


def plan(*subtasks: dict[str, object]) -> ModelResponse:
    """The planner's answer: these subtasks."""
    return reply_json({"subtasks": list(subtasks)})


@tool()
def search(query: str) -> dict[str, list[str]]:
    """Search the notes."""
    return {"hits": [f"note about {query}"]}


EXECUTIONS: list[str] = []
"""The idempotency key of every execution of ``send`` (clear it before a run)."""


@tool(side_effect=True, risk="write")
def send(to: str, ctx: ToolContext) -> dict[str, str]:
    """Send a message (a side effect)."""
    EXECUTIONS.append(ctx.idempotency_key)
    return {"sent_to": to}


def crash_workflow() -> Workflow:
    """A planner and a sender: two subtasks, each one side effect and one search."""
    return Workflow.build(
        name="crashy",
        orchestrator="planner",
        agents=[
            AgentSpec("planner", routes_to=("sender",)),
            AgentSpec("sender", tools=("send", "search")),
        ],
        tools=[send, search],
    )


def deterministic(r: ModelRequest) -> ModelResponse:
    """The crash workflow's model: the same answers for the same request, on every run."""
    if r.agent == "planner":
        return plan({"id": "s1", "agent": "sender"}, {"id": "s2", "agent": "sender"})
    if r.iteration == 1:
        return ModelResponse(
            model="scripted",
            tool_calls=[
                RecordedToolCall(
                    call_id=f"{r.subtask_id}-send", tool="send", arguments={"to": r.subtask_id}
                ),
                RecordedToolCall(
                    call_id=f"{r.subtask_id}-search", tool="search", arguments={"query": "q"}
                ),
            ],
        )
    return reply(f"{r.subtask_id} done")
