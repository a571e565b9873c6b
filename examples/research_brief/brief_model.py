"""The offline stand-in for an LLM in the research-brief example.

This is NOT a language model. It is a small, deterministic set of rules that plays each
agent's part well enough to run the workflow end to end without a network or an API key,
so that the runtime (planning, parallel subtasks, tool calls, typed handoffs, the event log)
can be seen working. The brief it writes is real, though: every point in it is a sentence
that ``search_notes`` found in ``corpus/``, attributed to its note.

How it answers, by ``request.agent`` and by what the conversation holds so far:

* **planner** - a Plan: two research subtasks that run in parallel ("practices": how the
  goal's subject works when done well; "risks": its failure modes), a "write" subtask that
  depends on both and a "review" subtask that depends on "write". The search queries are
  built from the goal: the topics listed after a colon ("...: idempotency, retries and
  cost control") or else the goal's words, plus words for the aspect.
* **researcher** - first turn: one ``search_notes`` call with the query named in its
  subtask ("Search for: ..."), or the description's words. Next turn: Findings built from
  the search results in the conversation: the highlight of each result that matched the
  goal's subject (by the search's own ``terms`` analyser) and scored at least 70% of the
  best, at most two per note and six in all.
* **writer** - a Brief from the Findings it received as inputs: one section per aspect,
  every point cited as ``[note.md]``.
* **reviewer** - first turn: ``save_brief`` with the brief rendered as markdown. Next
  turn: a Review (approved when the brief has at least two sections and three sources;
  ``saved_to`` is the path the tool returned).

After a rejected answer (a feedback message) it answers again from the same conversation.
Anything it was not written for - another agent, missing inputs, a tool it is not offered,
a search that found nothing - raises ``OfflineModelError`` (recorded as a failed LLM call,
which fails the subtask with that message) rather than inventing an answer.

Use a real model by changing the ``model:`` block of workflow.yaml; see README.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from brief_contracts import Brief, Findings, KeyPoint, Review, Section
from brief_tools import terms
from pydantic import ValidationError

from agentledger.errors import ModelError
from agentledger.llm import Message, ModelRequest, ModelResponse, call_tool, reply_json
from agentledger.redaction import PLACEHOLDER
from agentledger.schemas import Plan, PlannedSubtask

MAX_RESULTS = 8
MAX_POINTS = 6
MAX_POINTS_PER_NOTE = 2
MIN_RELATIVE_SCORE = 0.7  # keep results scoring at least this share of the best one
MIN_SECTIONS = 2
MIN_SOURCES = 3

_INSTRUCTION = re.compile(
    r"^\s*(?:please\s+)?(?:write|prepare|produce|draft|create|compile|give)\s+(?:me\s+)?"
    r"(?:an?\s+|the\s+)?(?:short\s+|brief\s+)?(?:research\s+)?"
    r"(?:brief|report|summary|overview|note)\s+(?:on|about|of|covering)\s+",
    re.IGNORECASE,
)
_LIST_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\bor\b)\s*", re.IGNORECASE)
_SEARCH_FOR = re.compile(r"Search for:\s*([^.\n]+)")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")
_QUERY_NOISE_TEXT = """
a an and are as at be by cite each every for from how in is it its of on or the to use what
when with search notes note point points
"""
_QUERY_NOISE = frozenset(_QUERY_NOISE_TEXT.split())


class OfflineModelError(ModelError):
    """The offline model was asked something it has no rule for."""

    def __init__(self, message: str) -> None:
        super().__init__(f"offline research-brief model: {message}", kind="unexpected_request")


@dataclass(frozen=True)
class Conversation:
    """One request, unpacked: the user's <data> block and the agent's turns since."""

    request: ModelRequest
    goal: str
    subtask: str
    inputs: dict[str, Any]
    turns: list[Message]

    @classmethod
    def of(cls, request: ModelRequest) -> Conversation:
        if len(request.messages) < 2 or request.messages[1].role != "user":
            raise OfflineModelError("expected a system prompt and then a user prompt")
        text = (request.messages[1].content or "").strip()
        if not (text.startswith("<data>") and text.endswith("</data>")):
            raise OfflineModelError("the user prompt is not a <data>...</data> block")
        try:
            data = orjson.loads(text.removeprefix("<data>").removesuffix("</data>"))
        except orjson.JSONDecodeError as exc:
            raise OfflineModelError(f"the <data> block is not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("goal"), str):
            raise OfflineModelError("the <data> block has no 'goal'")
        inputs = data.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise OfflineModelError("'inputs' in the <data> block is not an object")
        return cls(
            request, data["goal"], str(data.get("subtask") or ""), inputs, request.messages[2:]
        )

    def tool_results(self, tool: str) -> Iterator[str]:
        """The content of every result of ``tool`` so far, oldest first (out of its
        ``<data source="tool ...">`` block)."""
        for message in self.turns:
            if message.role == "tool" and message.name == tool:
                first, _, rest = (message.content or "").partition("\n")
                yield rest.removesuffix("</data>").strip() if first.startswith("<data") else first

    def require_tool(self, tool: str) -> None:
        if tool not in {t.name for t in self.request.tools}:
            raise OfflineModelError(
                f"agent {self.request.agent!r} is not offered the {tool!r} tool"
            )


# --- planner -----------------------------------------------------------------------------


def topic_of(goal: str) -> str:
    """The subject of the goal: 'Write a research brief on X.' -> 'X'. Masked personal
    data (``[email:3f2a9c1e0b7d]``) is not part of a subject."""
    goal = PLACEHOLDER.sub("", goal)
    topic = _INSTRUCTION.sub("", goal.strip(), count=1).strip().rstrip(".!?").strip()
    return topic or goal.strip()


def focus_of(topic: str) -> tuple[str, list[str]]:
    """'running agents in production: retries and cost control' ->
    ('running agents in production', ['retries', 'cost control'])."""
    framing, colon, focus = topic.partition(":")
    if not colon:
        return topic, [topic]
    items = [item.strip() for item in _LIST_SPLIT.split(focus) if item.strip()]
    return framing.strip(), items or [framing.strip()]


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def plan(c: Conversation) -> ModelResponse:
    framing, focus = focus_of(topic_of(c.goal))
    query, covering = " ".join(focus), _listing(focus)
    cite = "Cite the note behind every point."
    the_plan = Plan(
        subtasks=[
            PlannedSubtask(
                id="practices",
                agent="researcher",
                description=f"Mechanisms and practices: how {framing} works when done well, "
                f"covering {covering}. Search for: {query} how it works good practice. {cite}",
            ),
            PlannedSubtask(
                id="risks",
                agent="researcher",
                description=f"Risks and failure modes: what goes wrong with {framing}, "
                f"covering {covering}. Search for: {query} failure modes risks. {cite}",
            ),
            PlannedSubtask(
                id="write",
                agent="writer",
                description="Write the research brief from the findings of 'practices' and "
                "'risks': a summary, one section per aspect, every point attributed to its note.",
                depends_on=["practices", "risks"],
            ),
            PlannedSubtask(
                id="review",
                agent="reviewer",
                description=f"Review the brief: it needs at least {MIN_SECTIONS} sections and "
                f"{MIN_SOURCES} sources. Save it with save_brief and report the verdict.",
                depends_on=["write"],
            ),
        ],
        rationale="Practices and risks are independent questions, so two researchers work on "
        "them in parallel; the writer needs both; the reviewer checks the brief and saves it.",
    )
    return reply_json(the_plan.model_dump(mode="json"))


# --- researcher --------------------------------------------------------------------------


def _aspect(description: str) -> str:
    label, colon, _ = description.partition(":")
    if colon and 3 <= len(label.strip()) <= 120:
        return label.strip()
    return " ".join(description.split()[:8]) or "Findings"


def _query(description: str) -> str:
    named = _SEARCH_FOR.search(description)
    if named:
        return named.group(1).strip()
    words: list[str] = []
    for word in _WORD.findall(description):
        if word.lower() not in _QUERY_NOISE and word.lower() not in words:
            words.append(word.lower())
    if not words:
        raise OfflineModelError(f"no search words in the subtask {description!r}")
    return " ".join(words[:16])


def research(c: Conversation) -> ModelResponse:
    results = list(c.tool_results("search_notes"))
    if not results:
        c.require_tool("search_notes")
        return call_tool("search_notes", query=_query(c.subtask), limit=MAX_RESULTS)
    latest = results[-1]
    if latest.startswith("ERROR"):
        raise OfflineModelError(f"search_notes failed, and there is nothing to report: {latest}")
    found = orjson.loads(latest)
    # A hit is relevant when it matches the goal's subject, not only the aspect's words
    # ("failure modes" matches every note's section of that name).
    subject = set(terms(topic_of(c.goal)))
    hits = [h for h in found.get("results") or [] if subject & set(h["matched"])]
    points: list[KeyPoint] = []
    per_note: dict[str, int] = {}
    for hit in hits:
        source, text = hit["source"], hit["highlight"]
        if hit["score"] < MIN_RELATIVE_SCORE * hits[0]["score"]:
            break
        if per_note.get(source, 0) >= MAX_POINTS_PER_NOTE or any(p.point == text for p in points):
            continue
        per_note[source] = per_note.get(source, 0) + 1
        points.append(KeyPoint(point=text, source=source))
        if len(points) == MAX_POINTS:
            break
    if not points:
        raise OfflineModelError(
            f"search_notes found nothing about {topic_of(c.goal)!r} (query "
            f"{found.get('query')!r}); the offline model does not invent findings: ask about "
            "a subject the notes in corpus/ cover"
        )
    findings = Findings(
        aspect=_aspect(c.subtask),
        key_points=points,
        sources=list(dict.fromkeys(p.source for p in points)),
    )
    return reply_json(findings.model_dump(mode="json"))


# --- writer ------------------------------------------------------------------------------


def _findings_inputs(c: Conversation) -> list[Findings]:
    if not c.inputs:
        raise OfflineModelError("the writer received no findings to write from")
    out: list[Findings] = []
    for key, value in c.inputs.items():
        try:
            out.append(Findings.model_validate(value))
        except ValidationError as exc:
            raise OfflineModelError(
                f"input {key!r} is not Findings: {exc.errors()[0]['msg']}"
            ) from None
    return out


def _title(topic: str) -> str:
    title = topic[:1].upper() + topic[1:]
    if len(title) > 160:
        title = title[:160].rsplit(" ", 1)[0] + "..."
    return title


def write(c: Conversation) -> ModelResponse:
    topic = topic_of(c.goal)
    framing, focus = focus_of(topic)
    seen: set[str] = set()
    parts: list[tuple[str, list[KeyPoint]]] = []
    for f in _findings_inputs(c):
        fresh = [p for p in f.key_points if p.point not in seen]  # said once, where first found
        seen.update(p.point for p in fresh)
        if fresh:
            parts.append((f.aspect[:1].upper() + f.aspect[1:], fresh))
    sections = [
        Section(heading=heading, body="\n".join(f"- {p.point} [{p.source}]" for p in points))
        for heading, points in parts
    ]
    sources = list(dict.fromkeys(p.source for _, points in parts for p in points))
    scope = f"{framing}, with a focus on {_listing(focus)}" if focus != [topic] else topic
    counts = " and ".join(f"{len(points)} on {heading.lower()}" for heading, points in parts)
    tops = " ".join(
        f"Top finding on {heading.lower()}: {points[0].point}" for heading, points in parts
    )
    summary = (
        f"This brief collects what the team's notes say about {scope}. It draws "
        f"{len(seen)} findings from {len(sources)} notes: {counts}. {tops}"
    )
    brief = Brief(title=_title(topic), summary=summary, sections=sections, sources=sources)
    return reply_json(brief.model_dump(mode="json"))


# --- reviewer ----------------------------------------------------------------------------


def _brief_input(c: Conversation) -> Brief:
    briefs: list[Brief] = []
    for value in c.inputs.values():
        try:
            briefs.append(Brief.model_validate(value))
        except ValidationError:
            continue
    if len(briefs) != 1:
        raise OfflineModelError(f"the reviewer expects exactly one Brief input, got {len(briefs)}")
    return briefs[0]


def review(c: Conversation) -> ModelResponse:
    brief = _brief_input(c)
    markdown = brief.to_markdown()
    saves = list(c.tool_results("save_brief"))
    if not saves:
        c.require_tool("save_brief")
        return call_tool("save_brief", markdown=markdown)
    issues: list[str] = []
    score = 10
    if len(brief.sections) < MIN_SECTIONS:
        issues.append(f"the brief has {len(brief.sections)} section(s); it needs {MIN_SECTIONS}")
        score -= 3
    if len(brief.sources) < MIN_SOURCES:
        issues.append(f"the brief cites {len(brief.sources)} note(s); it needs {MIN_SOURCES}")
        score -= 3
    for section in brief.sections:
        if not any(f"[{source}]" in section.body for source in brief.sources):
            issues.append(f"section {section.heading!r} cites no source")
            score -= 1
    saved_to: str | None = None
    if saves[-1].startswith("ERROR"):
        issues.append(f"the brief could not be saved: {saves[-1]}")
        score -= 2
    else:
        saved_to = str(orjson.loads(saves[-1])["path"])
    verdict = Review(
        approved=len(brief.sections) >= MIN_SECTIONS and len(brief.sources) >= MIN_SOURCES,
        score=max(score, 0),
        issues=issues,
        brief_markdown=markdown,
        saved_to=saved_to,
    )
    return reply_json(verdict.model_dump(mode="json"))


_AGENTS: dict[str, Callable[[Conversation], ModelResponse]] = {
    "planner": plan,
    "researcher": research,
    "writer": write,
    "reviewer": review,
}


def respond(request: ModelRequest) -> ModelResponse:
    """Answer one agent step of the research-brief workflow (see the module docstring)."""
    answer = _AGENTS.get(request.agent)
    if answer is None:
        raise OfflineModelError(
            f"no rule for agent {request.agent!r}; it answers only {sorted(_AGENTS)}"
        )
    return answer(Conversation.of(request))
