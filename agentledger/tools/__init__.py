"""Tools: registry, typed arguments, the context a running tool receives."""

from agentledger.tools.registry import RISK_ORDER, Tool, ToolContext, ToolRegistry, as_tool, tool

__all__ = ["RISK_ORDER", "Tool", "ToolContext", "ToolRegistry", "as_tool", "tool"]
