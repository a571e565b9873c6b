"""The offline stand-in for an LLM in the swarm example.

NOT a language model: deterministic rules that play each agent, so a swarm of solvers
and its aggregation can be seen without a network or an API key.

* **planner** - the same incident for three solvers, each through one lens (customer
  impact, data risk, urgency), and a ``combine`` subtask for the aggregator that depends
  on all three.
* **solver** - an ``Assessment``: the weights of the lens's phrases found in the report
  (a phrase preceded by "no " does not count), capped at 10; sev1 from 7, sev2 from 4.
* **aggregator** (only with ``method: judge``) - a ``JudgeVerdict`` naming the candidate
  with the most evidence, the higher score breaking a tie.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from swarm_contracts import Assessment

from agentledger.errors import ModelError
from agentledger.llm import ModelRequest, ModelResponse, reply_json

LENSES: dict[str, dict[str, int]] = {
    "impact": {"customers": 3, "checkout": 3, "fails": 2, "all users": 4, "degraded": 1},
    "data": {"data loss": 5, "leak": 5, "corrupt": 4, "card": 2},
    "urgency": {"time out": 3, "fails": 2, "paged": 2, "since": 1, "growing": 2},
}


class OfflineModelError(ModelError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind="offline_model", retryable=False)


def data_of(request: ModelRequest) -> dict[str, Any]:
    content = request.messages[1].content or ""
    data: dict[str, Any] = orjson.loads(content.removeprefix("<data>").removesuffix("</data>"))
    return data


def plan() -> dict[str, Any]:
    solvers = [
        {
            "id": lens,
            "agent": "solver",
            "description": f"Lens: {lens}. Assess the incident's severity.",
        }
        for lens in LENSES
    ]
    combine = {
        "id": "combine",
        "agent": "aggregator",
        "description": "Combine the three assessments into one.",
        "depends_on": list(LENSES),
    }
    return {"subtasks": [*solvers, combine], "rationale": "three independent views, combined"}


def assess(lens: str, report: str) -> Assessment:
    text = report.lower()
    found = [
        phrase
        for phrase in LENSES[lens]
        if re.search(rf"(?<!no ){re.escape(phrase)}", text)  # "no data loss" is not data loss
    ]
    score = min(10.0, float(sum(LENSES[lens][p] for p in found)))
    severity = "sev1" if score >= 7 else "sev2" if score >= 4 else "sev3"
    return Assessment(lens=lens, severity=severity, score=score, evidence=found)


def judge(candidates: dict[str, Any]) -> dict[str, str]:
    best = max(candidates, key=lambda c: (len(candidates[c]["evidence"]), candidates[c]["score"]))
    return {
        "best": best,
        "reason": f"{best} rests on the most evidence: {', '.join(candidates[best]['evidence'])}",
    }


def respond(request: ModelRequest) -> ModelResponse:
    data = data_of(request)
    if request.agent == "planner":
        return reply_json(plan())
    if request.agent == "solver":
        match = re.match(r"Lens: (\w+)\.", data["subtask"])
        if match is None or match.group(1) not in LENSES:
            raise OfflineModelError(f"solver: no known lens in {data['subtask']!r}")
        return reply_json(assess(match.group(1), data["goal"]).model_dump())
    if request.agent == "aggregator" and data["inputs"]:
        return reply_json(judge(data["inputs"]))
    raise OfflineModelError(f"no rule for agent {request.agent!r}")
