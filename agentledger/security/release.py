"""Raw values go out only where a tool declares them.

The primary log holds placeholders (``[email:3f2a9c1e0b7d]``); a tool gets the raw value
behind one only in an argument that declares its category::

    @tool(risk="external", side_effect=True, raw_values={"to": ["email"]})
    def send_email(to: str, body: str) -> dict: ...

    tools:
      send_email:
        function: "mail:send_email"
        raw_values: {to: [email]}           # the body stays masked

Everything else stays a placeholder. ``raw_values: true`` (the older form) releases
personal data into every argument, never a secret.

Secrets (``api_key``, ``token``, ``secret`` and the like) are released only into an
argument that names the category, and into a tool with risk ``external`` only when the
workflow grants that tool, argument and category as well::

    security:
      release:
        - {tool: call_partner_api, argument: api_key, category: api_key}

Every secret released is recorded (``raw_value_released``). ``http_fetch`` declares only
``url: [ip]``, so a key in a URL reaches the host as its placeholder, never as the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.redaction import MARKERS, PLACEHOLDER

if TYPE_CHECKING:
    from agentledger.security.masking import Masker
    from agentledger.tools.registry import Tool

__all__ = [
    "SECRET_CATEGORIES",
    "Release",
    "ReleaseGrant",
    "declaration_problems",
    "declared",
    "grant_problems",
    "resolve",
]

SECRET_CATEGORIES = frozenset({"api_key", "token", "secret", "private_key", "password"})
"""Categories that are credentials: never released by ``raw_values: true``."""


class ReleaseGrant(BaseModel):
    """One entry of ``security.release``: this tool may get this secret in this argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str = Field(min_length=1)
    argument: str = Field(min_length=1)
    category: str = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Release:
    """A secret resolved into an argument, to be recorded as ``raw_value_released``."""

    argument: str
    category: str
    placeholder: str
    granted_by: str  # "tool" or "workflow"


def declared(tool: Tool, argument: str) -> frozenset[str]:
    """The categories ``tool`` declares for ``argument``."""
    raw = tool.raw_values
    if raw is True:
        return frozenset(MARKERS) - SECRET_CATEGORIES
    if not raw:
        return frozenset()
    assert isinstance(raw, Mapping)
    return frozenset(raw.get(argument, ()))


def _granted(tool: Tool, argument: str, category: str, grants: tuple[ReleaseGrant, ...]) -> bool:
    return any(
        g.tool == tool.name and g.argument == argument and g.category == category for g in grants
    )


def resolve(
    tool: Tool,
    arguments: dict[str, JsonValue],
    masker: Masker,
    grants: tuple[ReleaseGrant, ...] = (),
) -> tuple[dict[str, JsonValue], list[Release]]:
    """``arguments`` with the placeholders ``tool`` may receive resolved, and the secrets
    that were. A placeholder the vault does not know stays as it is."""
    resolved, released, _ = resolve_traced(tool, arguments, masker, grants)
    return resolved, released


def restore(value: JsonValue, placeholders: Mapping[str, str]) -> JsonValue:
    """``value`` with the raw values of ``placeholders`` (raw -> placeholder) put back."""
    if not placeholders:
        return value
    if isinstance(value, str):
        for raw, ph in placeholders.items():
            if raw in value:
                value = value.replace(raw, ph)
        return value
    if isinstance(value, dict):
        return {k: restore(v, placeholders) for k, v in value.items()}
    if isinstance(value, list):
        return [restore(v, placeholders) for v in value]
    return value


def resolve_traced(
    tool: Tool,
    arguments: dict[str, JsonValue],
    masker: Masker,
    grants: tuple[ReleaseGrant, ...] = (),
) -> tuple[dict[str, JsonValue], list[Release], dict[str, str]]:
    """As :func:`resolve`, plus every raw value put in and the placeholder it stood for."""
    if not tool.raw_values:
        return arguments, [], {}
    traced: dict[str, str] = {}
    released: list[Release] = []
    out: dict[str, JsonValue] = {}
    for name, value in arguments.items():
        allowed = declared(tool, name)
        if not allowed:
            out[name] = value
            continue

        def substitute(
            match: re.Match[str], name: str = name, allowed: frozenset[str] = allowed
        ) -> str:
            ph, category = match.group(), match.group(1)
            if category not in allowed:
                return ph
            granted_by = "tool"
            if category in SECRET_CATEGORIES and tool.risk == "external":
                if not _granted(tool, name, category, grants):
                    return ph
                granted_by = "workflow"
            raw = masker.vault.get(ph)
            if raw is None:
                return ph
            if category in SECRET_CATEGORIES:
                released.append(Release(name, category, ph, granted_by))
            traced[raw] = ph
            return raw

        out[name] = _walk(value, substitute)
    return out, released, traced


def _walk(value: JsonValue, substitute: Callable[[re.Match[str]], str]) -> JsonValue:
    if isinstance(value, str):
        return PLACEHOLDER.sub(substitute, value) if "[" in value else value
    if isinstance(value, dict):
        return {k: _walk(v, substitute) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, substitute) for v in value]
    return value


def declaration_problems(tool: Tool) -> list[str]:
    """What is wrong with ``tool``'s ``raw_values`` declaration (unknown argument or category)."""
    raw = tool.raw_values
    if isinstance(raw, bool):
        return []
    known = set(MARKERS) | SECRET_CATEGORIES
    fields = set(tool.arguments.model_fields)
    problems: list[str] = []
    for argument, categories in raw.items():
        if argument not in fields:
            problems.append(
                f"tool {tool.name!r} declares raw_values for {argument!r}, which is not one "
                f"of its arguments ({', '.join(sorted(fields)) or 'none'})"
            )
        for category in categories:
            if category not in known:
                problems.append(
                    f"tool {tool.name!r}: raw_values category {category!r} of {argument!r} is "
                    f"unknown; use one of {', '.join(sorted(known))}"
                )
    return problems


def grant_problems(grants: tuple[ReleaseGrant, ...], tools: Iterable[Tool]) -> list[str]:
    """``security.release`` entries that name no tool, or an argument the tool lacks."""
    by_name = {t.name: t for t in tools}
    problems: list[str] = []
    for g in grants:
        tool = by_name.get(g.tool)
        if tool is None:
            problems.append(f"security.release names tool {g.tool!r}, which is not registered")
        elif g.category not in declared(tool, g.argument):
            problems.append(
                f"security.release grants {g.category!r} in {g.tool}.{g.argument}, but the "
                f"tool does not declare it (raw_values: {{{g.argument}: [{g.category}]}})"
            )
    return problems
