"""The offline stand-in for an LLM in the hierarchical example: deterministic rules.

* director - research (the research lead), then write (the writer) after it.
* research_lead - two researcher subtasks in parallel: "mechanics" and "pitfalls".
* researcher - two findings about its aspect (named first in its subtask).
* writer - a markdown brief from the lead's result (findings by nested subtask id).

It reads only the <data> block the runtime sends; anything else raises a ModelError.
"""

from __future__ import annotations

from typing import Any

import orjson
from team_contracts import Findings

from agentledger.errors import ModelError
from agentledger.llm import ModelRequest, ModelResponse, reply, reply_json
from agentledger.schemas import Plan, PlannedSubtask

POINTS = {
    "mechanics": [
        "the client sends one key per logical operation",
        "the server stores the outcome",
    ],
    "pitfalls": ["keys reused across operations replay the wrong answer", "outcomes expire"],
}


def _data(request: ModelRequest) -> dict[str, Any]:
    text = (request.messages[1].content or "").strip()
    data = orjson.loads(text.removeprefix("<data>").removesuffix("</data>"))
    if not isinstance(data, dict):
        raise ModelError("the <data> block is not an object", kind="unexpected_request")
    return data


def _plan(*subtasks: PlannedSubtask, why: str) -> ModelResponse:
    return reply_json(Plan(subtasks=list(subtasks), rationale=why).model_dump(mode="json"))


def respond(request: ModelRequest) -> ModelResponse:
    data = _data(request)
    goal, subtask, inputs = str(data["goal"]), str(data["subtask"]), data.get("inputs") or {}
    if request.agent == "director":
        return _plan(
            PlannedSubtask(id="research", agent="research_lead", description=f"Research: {goal}"),
            PlannedSubtask(
                id="write", agent="writer", description="Write the brief", depends_on=["research"]
            ),
            why="research is delegated to the research team, then written up",
        )
    if request.agent == "research_lead":
        return _plan(
            *(
                PlannedSubtask(id=aspect, agent="researcher", description=f"{aspect}: {goal}")
                for aspect in POINTS
            ),
            why="one researcher per aspect, in parallel",
        )
    if request.agent == "researcher":
        aspect = subtask.partition(":")[0]
        if aspect not in POINTS:
            raise ModelError(f"no findings for {aspect!r}", kind="unexpected_request")
        return reply_json(Findings(aspect=aspect, points=POINTS[aspect]).model_dump(mode="json"))
    if request.agent == "writer":
        research = inputs.get("research") or {}
        sections = [
            f"## {f['aspect'].capitalize()}\n" + "".join(f"- {p}\n" for p in f["points"])
            for f in research.values()
        ]
        return reply(f"# {goal}\n\n" + "\n".join(sections))
    raise ModelError(f"no rule for agent {request.agent!r}", kind="unexpected_request")
