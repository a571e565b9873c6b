"""The offline stand-in for an LLM in the peer-to-peer support-desk example.

NOT a language model: a few deterministic rules that play each agent's part, so the
handoffs between peers can be seen without a network or an API key.

* **triage** - a ``Triage`` of the ticket (the goal): its category from keywords, its
  priority from words like "cannot" or "all users", and a handoff to the specialist.
* **specialist** - a ``Draft`` reply: the playbook steps for the category. Its first draft
  forgets the escalation line the review policy asks for; given a ``Review`` with issues
  (a rework handoff) it fixes them. Always hands the draft to the reviewer.
* **reviewer** - a ``Review`` against the policy (at least three steps, and a way to reach
  a person if the steps do not help). With issues it hands the draft back to the
  specialist; without, it approves and hands off to nobody, which ends the task.

Anything else raises ``OfflineModelError`` instead of inventing an answer.
"""

from __future__ import annotations

from typing import Any

import orjson
from support_contracts import Category, Draft, Review, Triage

from agentledger.errors import ModelError
from agentledger.llm import ModelRequest, ModelResponse, reply_json

ESCALATION = "If this does not solve it, reply to this message and a person will take over."
MIN_STEPS = 3

PLAYBOOK: dict[Category, list[str]] = {
    "login": [
        "Reset your password from the sign-in page (the link is valid for 30 minutes).",
        "Clear the site's cookies, then sign in again.",
        "If you use single sign-on, sign in through your company portal instead.",
    ],
    "billing": [
        "Open Billing > Invoices and check the charge's invoice number.",
        "Duplicate charges are refunded automatically within 5 business days.",
        "Update an expired card under Billing > Payment methods.",
    ],
    "performance": [
        "Check status.example.com for an ongoing incident.",
        "Try again with browser extensions disabled.",
        "Send us the time of the slow request and your account id.",
    ],
    "other": [
        "Describe what you expected to happen and what happened instead.",
        "Attach a screenshot if you can.",
        "Tell us your account id.",
    ],
}

KEYWORDS: dict[Category, tuple[str, ...]] = {
    "login": ("log in", "login", "sign in", "password", "locked out"),
    "billing": ("invoice", "charge", "charged", "refund", "card", "billing"),
    "performance": ("slow", "timeout", "times out", "loading"),
}


class OfflineModelError(ModelError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind="offline_model", retryable=False)


def data_of(request: ModelRequest) -> dict[str, Any]:
    """The goal, subtask and inputs the runtime put in the first user message."""
    content = request.messages[1].content or ""
    body = content.removeprefix("<data>").removesuffix("</data>")
    data: dict[str, Any] = orjson.loads(body)
    return data


def triage(goal: str) -> dict[str, Any]:
    text = goal.lower()
    category: Category = next(
        (c for c, words in KEYWORDS.items() if any(w in text for w in words)), "other"
    )
    urgent = any(w in text for w in ("cannot", "can't", "all users", "urgent", "down"))
    answer = Triage(category=category, priority="high" if urgent else "normal", summary=goal)
    return {
        **answer.model_dump(),
        "handoff": {"to": "specialist", "note": f"Draft a reply to this {category} ticket."},
    }


def render(category: Category, steps: list[str], escalate: bool) -> str:
    lines = [f"Sorry for the trouble with {category}. Please try these steps:"]
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    if escalate:
        lines.append(ESCALATION)
    return "\n".join(lines)


def draft(source: dict[str, Any]) -> dict[str, Any]:
    if "priority" in source:  # from triage: the first draft
        category: Category = source["category"]
        steps, escalate, revision = PLAYBOOK[category][:2], False, 1
    elif "issues" in source:  # from the reviewer: rework what it found
        category, steps = source["category"], list(source["steps"])
        escalate, revision = ESCALATION in source["reply"], source["revision"] + 1
        for issue in source["issues"]:
            if issue.startswith("fewer than"):
                steps = PLAYBOOK[category][: max(MIN_STEPS, len(steps))]
            if issue.startswith("no escalation"):
                escalate = True
    else:
        raise OfflineModelError(f"specialist: no triage or review among its inputs: {source}")
    answer = Draft(
        category=category, reply=render(category, steps, escalate), steps=steps, revision=revision
    )
    return {
        **answer.model_dump(),
        "handoff": {"to": "reviewer", "note": f"Review revision {revision} of the reply."},
    }


def review(source: dict[str, Any]) -> dict[str, Any]:
    got = Draft.model_validate(source)
    issues = []
    if len(got.steps) < MIN_STEPS:
        issues.append(f"fewer than {MIN_STEPS} steps: give the customer more to try")
    if ESCALATION not in got.reply:
        issues.append("no escalation path: tell the customer how to reach a person")
    answer = Review(approved=not issues, issues=issues, **got.model_dump())
    if not issues:
        return answer.model_dump()
    note = "Rework the reply: " + "; ".join(issues)
    return {**answer.model_dump(), "handoff": {"to": "specialist", "note": note}}


def respond(request: ModelRequest) -> ModelResponse:
    data = data_of(request)
    inputs = list(data["inputs"].values())
    if request.agent == "triage":
        return reply_json(triage(data["goal"]))
    if request.agent == "specialist" and len(inputs) == 1:
        return reply_json(draft(inputs[0]))
    if request.agent == "reviewer" and len(inputs) == 1:
        return reply_json(review(inputs[0]))
    raise OfflineModelError(f"no rule for agent {request.agent!r} with {len(inputs)} inputs")
