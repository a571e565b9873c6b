"""MCP events: the tool list of each MCP server as pinned when a task starts.

A resumed or replayed task reads its pins from the log, so it sees the tools (names,
descriptions, input schemas) it started with even if the server has changed since.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.schemas.envelope import EventBase


class PinnedMcpTool(BaseModel):
    """One tool as the server described it, under the name agents call it by."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the registry name (the workflow's key)
    remote_name: str  # the server's name for it
    description: str = ""
    input_schema: dict[str, JsonValue] = Field(default_factory=dict)
    digest: str  # sha256 of the canonical description + schema, first 16 hex digits


class McpToolsPinned(EventBase):
    type: Literal["mcp_tools_pinned"] = "mcp_tools_pinned"
    server: str
    transport: Literal["stdio", "http"]
    tools: list[PinnedMcpTool] = Field(default_factory=list)
