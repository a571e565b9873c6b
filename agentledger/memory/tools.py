"""The memory tools agents are granted by their ``memory`` block (see memory/access.py).

They are ordinary registry tools, so every guarantee of a tool call holds: validated
arguments, idempotency keys, approvals by risk, injection screening of what comes back
(a memory is data, never instructions), breakers and timeouts.

``memory_write`` changes nothing itself: its outcome records a ``memory_written`` event in
the same batch as ``tool_call_completed``, and the index is a projection of those events.
It is safe to retry (a write of a key replaces that key).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue

from agentledger.errors import ToolError
from agentledger.memory.access import EPISODES, SEARCH, WRITE
from agentledger.schemas import EventBase, ToolCallRequested
from agentledger.schemas.memory import NAMESPACE_PATTERN, MemorySource, MemoryWritten
from agentledger.tools.registry import MemoryAccess, Tool, ToolContext, tool

Namespace = Annotated[str | None, Field(default=None, pattern=NAMESPACE_PATTERN)]


def _memory(ctx: ToolContext) -> MemoryAccess:
    if ctx.memory is None:
        raise ToolError(
            "long-term memory is not configured in this runtime (build it with "
            "agentledger.memory.MemoryService)",
            kind="memory_unavailable",
        )
    return ctx.memory


@tool(
    SEARCH,
    description="Search long-term memory for what is relevant to a query. Returns the "
    "closest memories of one namespace, best first.",
    risk="read",
    timeout_s=30.0,
)
async def memory_search(
    query: Annotated[str, Field(min_length=1, max_length=2000)],
    ctx: ToolContext,
    namespace: Namespace = None,
    top_k: Annotated[int | None, Field(ge=1, le=50)] = None,
) -> dict[str, Any]:
    assert namespace is not None, "admission fills in the namespace"
    hits = await _memory(ctx).search(namespace, query, top_k or 5)
    return {"namespace": namespace, "memories": hits}


@tool(
    WRITE,
    description="Store a fact in long-term memory under a key (a later write of the same key "
    "replaces it), for this and later tasks.",
    risk="write",
    side_effect=True,
    safe_to_retry=True,
)
def memory_write(
    key: Annotated[str, Field(min_length=1, max_length=200)],
    text: Annotated[str, Field(min_length=1, max_length=20_000)],
    namespace: Namespace = None,
    metadata: dict[str, JsonValue] | None = None,
) -> dict[str, Any]:
    return {"namespace": namespace, "key": key, "stored": True}


def _record_write(request: ToolCallRequested, cause: EventBase) -> list[EventBase]:
    args = request.arguments
    metadata = args.get("metadata")
    return [
        MemoryWritten.caused_by(
            cause,
            agent=request.agent,
            namespace=args["namespace"],
            key=args["key"],
            text=args["text"],
            metadata=metadata if isinstance(metadata, dict) else {},
            source=MemorySource(
                kind="agent",
                subtask_id=request.subtask_id,
                call_id=request.call_id,
                idempotency_key=request.idempotency_key,
            ),
        )
    ]


@tool(
    EPISODES,
    description="Past tasks (goal, status, outcome) of the same workflow, user or session "
    "as this one, newest first.",
    risk="read",
    timeout_s=30.0,
)
async def memory_episodes(
    ctx: ToolContext,
    scope: Literal["workflow", "user", "session"] = "workflow",
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> dict[str, Any]:
    return {"scope": scope, "episodes": await _memory(ctx).episodes(ctx.task_id, scope, limit)}


def memory_tools() -> list[Tool]:
    """The three memory tools, ready to register."""
    from dataclasses import replace

    return [memory_search, replace(memory_write, records=_record_write), memory_episodes]
