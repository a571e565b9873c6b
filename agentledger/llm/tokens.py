"""Token estimates for when a model has not reported a count (yet).

Roughly four characters a token: close enough for budgets, costs and context thresholds to
mean something offline. A real model's ``usage.input_tokens`` always wins where known.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentledger.llm.base import Message, ModelRequest, canonical_json
from agentledger.schemas.llm import RecordedToolCall, TokenUsage


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


def estimate_usage(
    request: ModelRequest, content: str | None, tool_calls: Iterable[RecordedToolCall]
) -> TokenUsage:
    """What a call cost in tokens when the server did not say: the prompt (messages, tool
    schemas, output schema) in, the answer (text and tool calls) out."""
    prompt = estimate_messages_tokens(request.messages)
    prompt += sum(estimate_tokens(canonical_json(t.model_dump(mode="json"))) for t in request.tools)
    if request.output_schema is not None:
        prompt += estimate_tokens(canonical_json(request.output_schema))
    answer = estimate_message_tokens(
        Message(role="assistant", content=content, tool_calls=list(tool_calls))
    )
    return TokenUsage(input_tokens=prompt, output_tokens=answer)
