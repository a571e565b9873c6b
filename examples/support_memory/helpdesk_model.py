"""The offline stand-in for an LLM in the support example: deterministic rules per agent.

* triage - the topic from keywords in the customer's message; urgent if it says so.
* researcher - searches long-term memory (``memory_search``) first; when memory has no good
  match, asks the knowledge base over MCP (``kb_lookup``) and stores the article in memory
  (``memory_write``), so the next customer with that question is answered from memory.
* resolver - writes the reply; escalates when nothing was found or the matter is urgent,
  and notes the customer's issue in their own memory namespace.
* escalation - opens a helpdesk ticket over MCP (``open_ticket``) when asked to.

It reads only what the runtime sends (the <data> block and tool results); anything else
raises a ModelError, recorded as a failed LLM call, instead of inventing an answer.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from agentledger.errors import ModelError
from agentledger.llm import ModelRequest, ModelResponse, call_tool, reply_json

MIN_SCORE = 0.2  # below this a memory is not about the question (hashing embedder)
_DATA = re.compile(r"<data[^>]*>(.*)</data>", re.DOTALL)


def _data(text: str | None) -> Any:
    """The JSON inside a <data> block; a plain-text answer (a refused or failed tool call
    says why in words) is returned as text."""
    match = _DATA.search(text or "")
    body = (match.group(1) if match else (text or "")).strip()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body


def _tool_results(request: ModelRequest) -> list[Any]:
    return [_data(m.content) for m in request.messages if m.role == "tool"]


def triage(goal: str) -> dict[str, Any]:
    text = goal.lower()
    topic = next((t for t, words in _TOPICS.items() if any(w in text for w in words)), "other")
    return {"topic": topic, "urgent": "urgent" in text, "question": goal}


_TOPICS = {
    "refund": ("refund", "money back", "return"),
    "shipping": ("shipping", "delivery", "parcel", "arrive"),
    "warranty": ("warranty", "broken", "defect"),
}


def research(request: ModelRequest, inputs: dict[str, Any]) -> ModelResponse:
    topic = inputs["triage"]["topic"]
    results = _tool_results(request)
    if not results:
        return call_tool("memory_search", query=topic)
    memories = results[0].get("memories", []) if isinstance(results[0], dict) else []
    best = memories[0] if memories and memories[0]["score"] >= MIN_SCORE else None
    if best is not None and best["key"] == topic:
        return reply_json({"answer": best["text"], "source": "memory"})
    if topic == "other":
        return reply_json({"answer": None, "source": "none"})
    if len(results) == 1:
        return call_tool("kb_lookup", topic=topic)
    article = results[1]
    if not isinstance(article, str) or article.startswith(("no article", "ERROR")):
        return reply_json({"answer": None, "source": "none"})
    if len(results) == 2:
        return call_tool("memory_write", key=topic, text=article, metadata={"from": "kb"})
    return reply_json({"answer": article, "source": "knowledge_base"})


def resolve(request: ModelRequest, data: dict[str, Any]) -> ModelResponse:
    inputs = data["inputs"]
    triaged, findings = inputs["triage"], inputs["research"]
    if not _tool_results(request):
        return call_tool("memory_write", key="last-issue", text=f"asked about {triaged['topic']}")
    if findings["answer"] is None:
        return reply_json(
            {"reply": "I have passed your question to a colleague.", "escalate": True}
        )
    return reply_json({"reply": findings["answer"], "escalate": bool(triaged["urgent"])})


def escalate(request: ModelRequest, data: dict[str, Any]) -> ModelResponse:
    resolution = data["inputs"]["resolve"]
    results = _tool_results(request)
    if not resolution["escalate"]:
        return reply_json({"reply": resolution["reply"], "ticket": None})
    if not results:
        question = data["inputs"]["triage"]["question"]
        return call_tool(
            "open_ticket", customer="customer", summary=question[:200], priority="high"
        )
    opened = results[0] if isinstance(results[0], dict) else {}
    if not opened.get("ticket"):  # the helpdesk refused or could not be reached
        reply = "We could not reach our helpdesk just now; please contact us by phone."
        return reply_json({"reply": reply, "ticket": None})
    return reply_json({"reply": resolution["reply"], "ticket": opened["ticket"]})


def respond(request: ModelRequest) -> ModelResponse:
    data = _data(request.messages[1].content)
    if not isinstance(data, dict):
        raise ModelError("the request carries no <data> block", kind="unexpected_request")
    if request.agent == "triage":
        return reply_json(triage(str(data["goal"])))
    if request.agent == "researcher":
        return research(request, data["inputs"])
    if request.agent == "resolver":
        return resolve(request, data)
    if request.agent == "escalation":
        return escalate(request, data)
    raise ModelError(f"no rule for agent {request.agent!r}", kind="unexpected_request")
