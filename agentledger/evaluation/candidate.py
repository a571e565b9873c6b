"""A workflow as an evaluation or a fork runs it: another file, other models.

``with_models`` overrides model names per agent (``{"writer": "gpt-4o"}``) or for all
agents (``{"*": "gpt-4o-mini"}``); the rest of each agent's model settings stay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from agentledger.agents.workflow import Workflow
from agentledger.errors import UsageError


def parse_model_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["gpt-4o"]`` (every agent) or ``["writer=gpt-4o", ...]`` as a map."""
    out: dict[str, str] = {}
    for item in items:
        agent, sep, model = item.partition("=")
        if not sep:
            agent, model = "*", item
        if not agent or not model:
            raise UsageError(f"--model {item!r} must look like MODEL or AGENT=MODEL")
        out[agent] = model
    return out


def with_models(workflow: Workflow, overrides: Mapping[str, str]) -> Workflow:
    """``workflow`` with the model names ``overrides`` gives (``*``: every agent)."""
    unknown = [a for a in overrides if a != "*" and a not in workflow.agents]
    if unknown:
        raise UsageError(
            f"model override for unknown agent(s) {', '.join(unknown)}; "
            f"agents are {', '.join(workflow.agents)}"
        )
    if not overrides:
        return workflow
    agents = {}
    for name, spec in workflow.agents.items():
        model = overrides.get(name, overrides.get("*"))
        if model is not None:
            spec = dataclasses.replace(spec, model=spec.model.model_copy(update={"model": model}))
        agents[name] = spec
    return dataclasses.replace(workflow, agents=agents)
