"""Token estimates for when a model has not reported a count (yet).

Roughly four characters a token: close enough for budgets, costs and context thresholds to
mean something offline. A real model's ``usage.input_tokens`` always wins where known.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentledger.llm.base import Message, canonical_json


def estimate_tokens(text: str | None) -> int:
    """About four characters a token; 0 for nothing."""
    return 0 if not text else max(1, len(text) // 4)


def estimate_message_tokens(message: Message) -> int:
    """A message's text plus the tool calls it asks for."""
    return estimate_tokens(message.content) + sum(
        estimate_tokens(call.tool) + estimate_tokens(canonical_json(call.arguments))
        for call in message.tool_calls
    )


def estimate_messages_tokens(messages: Iterable[Message]) -> int:
    return sum(estimate_message_tokens(m) for m in messages)
