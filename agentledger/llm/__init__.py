"""Models: the ChatModel seam, the offline scripted model, pricing."""

from agentledger.llm.base import (
    ChatModel,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolSpec,
)
from agentledger.llm.pricing import ModelPrice, PriceTable
from agentledger.llm.scripted import (
    ScriptedModel,
    ScriptExhaustedError,
    call_tool,
    call_tools,
    reply,
    reply_json,
)

__all__ = [
    "ChatModel",
    "Message",
    "ModelPrice",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "PriceTable",
    "ScriptExhaustedError",
    "ScriptedModel",
    "ToolSpec",
    "call_tool",
    "call_tools",
    "reply",
    "reply_json",
]
