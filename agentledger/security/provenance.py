"""Untrusted data cannot steer a side effect: provenance of the values in a tool call.

Every piece of content in an agent's context has a source the log knows:

* **trusted**: the workflow (agent instructions and descriptions, tool descriptions and
  policies, ``security.trusted_values``);
* **configurable**: the goal and its inputs, given by whoever submitted the task, except
  the inputs the workflow names in ``security.untrusted_inputs`` (third-party content
  passed in: a pasted e-mail, an uploaded document), which are untrusted;
* **untrusted**: tool results (``tool:read_file#c1``), context summaries that digest them
  (any turn carrying a ``<data>`` block), and the outputs of other agents whose own context
  held untrusted content (``agent:researcher#r``), handed on through plan dependencies,
  handoffs or nested plans, however many hops back. A subtask fed such an output counts
  its description (a handoff note is written by the sender) as untrusted too.

A tool declares the arguments that decide *where* or *what* (``decides``: recipients,
URLs, domains, paths, amounts; inferred from the argument names when not declared). When a
step whose context holds untrusted content asks for a call with side effects or risk
``external``, each deciding value must not *come from* untrusted data, unless it is on an
allow-list (the tool's ``allowed_recipients`` / ``allowed_domains``, or
``security.trusted_values``). A value comes from untrusted data when it occurs in untrusted
content and in no trusted or configurable content; it is checked piece by piece: every
e-mail address, URL, host and placeholder in it, and the value as a whole.

This is the information-flow idea of CaMeL (DeepMind) and FIDES (Microsoft), applied at
the one place a side effect is admitted. Its limits, stated plainly: the check follows
values that are copied, not meaning. A model that rewrites an address it read
("ann at evil dot test" becomes ``ann@evil.test``) or computes an amount from a document
produces a value that occurs nowhere and passes; a value that happens to occur in trusted
text as well passes too. It narrows the injection channel for the arguments that matter;
the allow-lists stay the hard boundary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from pydantic import JsonValue

from agentledger.projections.task_state import SubtaskState, TaskState
from agentledger.redaction import PLACEHOLDER
from agentledger.security.policy import ToolPolicy, domain_allowed, recipient_allowed

__all__ = [
    "DECIDING_NAMES",
    "Context",
    "Taint",
    "deciding_arguments",
    "subtask_context",
    "tainted_arguments",
]

DECIDING_NAMES = re.compile(
    r"^(?:to|cc|bcc|recipients?|emails?|e_?mail_address|address(?:es)?|phone|number"
    r"|urls?|uri|links?|endpoint|webhook|domains?|hosts?|path|file(?:name)?|dest(?:ination)?"
    r"|target|channel|amount|sum|total|price|quantity|account|iban|payee|beneficiary)$",
    re.IGNORECASE,
)
"""Argument names that decide where or what, for a tool that declares no ``decides``."""


@dataclass(frozen=True, slots=True)
class Context:
    """The texts in a subtask's context, split by trust. ``untrusted`` maps a source to its text."""

    trusted: tuple[str, ...]
    untrusted: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Taint:
    """A deciding argument whose value came from untrusted data."""

    argument: str
    value: str  # the piece of the value found (as the log holds it)
    sources: tuple[str, ...]


def deciding_arguments(decides: tuple[str, ...] | None, argument_names: list[str]) -> list[str]:
    """The arguments checked: the declared ones, or those with a deciding name."""
    if decides is not None:
        return [a for a in argument_names if a in decides]
    return [a for a in argument_names if DECIDING_NAMES.match(a)]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _text(value: JsonValue) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    return str(value)


def _own_sources(sub: SubtaskState) -> dict[str, str]:
    sources: dict[str, str] = {}
    asked: dict[str, JsonValue] = {
        call.call_id: call.arguments for turn in sub.turns for call in turn.tool_calls
    }
    for turn in sub.turns:
        if turn.role == "tool":
            content = _without_echo(turn.content or "", asked.get(turn.tool_call_id or ""))
            sources[f"tool:{turn.name or 'tool'}#{turn.tool_call_id or '?'}"] = content
        elif turn.role == "user" and "<data" in (turn.content or ""):
            sources[f"summary:{sub.id}"] = turn.content or ""
    return sources


def _without_echo(result: str, arguments: JsonValue) -> str:
    """A tool result without the echo of its own call's arguments (``write_file`` answers
    with the path it wrote): an echo adds nothing the context did not hold already, and
    would make the agent's own earlier choices look as if they came from the tool."""
    for piece in sorted(set(_pieces(arguments)), key=len, reverse=True):
        if len(piece) >= 3:
            result = result.replace(piece, " ")
    return result


def _tainted_inputs(
    state: TaskState, sub: SubtaskState, seen: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Inputs that are outputs of subtasks whose context held untrusted content."""
    out: dict[str, str] = {}
    for key, value in sub.inputs.items():
        dep = state.subtasks.get(key)
        if dep is None or key in seen or key == sub.id:
            continue
        if _own_sources(dep) or _tainted_inputs(state, dep, seen | {sub.id}):
            out[f"agent:{dep.agent}#{dep.id}"] = _text(value)
    return out


def subtask_context(
    state: TaskState,
    sub: SubtaskState,
    workflow_texts: tuple[str, ...],
    untrusted_inputs: tuple[str, ...] = (),
) -> Context:
    """The trusted and untrusted texts of ``sub``'s context, as of ``state``.

    ``untrusted_inputs`` names goal inputs that hold third-party content (a pasted e-mail,
    an uploaded document): they are untrusted (``input:KEY``), and since every planner saw
    them, so is every subtask description written from them (``plan:SUBTASK``)."""
    untrusted = {**_own_sources(sub), **_tainted_inputs(state, sub)}
    foreign = {k: v for k, v in state.inputs.items() if k in untrusted_inputs}
    untrusted.update({f"input:{k}": _text(v) for k, v in foreign.items()})
    own = {k: v for k, v in state.inputs.items() if k not in foreign}
    configurable = [state.goal, _text(own)]
    if foreign:
        untrusted[f"plan:{sub.id}"] = sub.description
    elif untrusted and any(k.startswith("agent:") for k in untrusted):
        untrusted[f"handoff:{sub.id}"] = sub.description
    else:
        configurable.append(sub.description)
    plain_inputs = {
        k: v for k, v in sub.inputs.items() if k not in state.subtasks and k not in foreign
    }
    configurable.append(_text(plain_inputs))
    return Context(trusted=(*workflow_texts, *configurable), untrusted=untrusted)


_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_][\w-]+")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)
_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?(\[[^\]]+\]|[^:/?#\s]+)", re.IGNORECASE)


def _pieces(value: JsonValue) -> Iterator[str]:
    """What a value is made of, for the occurrence test."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        yield repr(value)
        if isinstance(value, float) and value.is_integer():
            yield str(int(value))
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _pieces(item)
        return
    if isinstance(value, list):
        for item in value:
            yield from _pieces(item)
        return
    text = value.strip()
    if len(text) >= 3:
        yield text
    yield from (m.group() for m in PLACEHOLDER.finditer(text))
    yield from _EMAIL.findall(text)
    for url in _URL.findall(text):
        yield url
        host = _HOST.match(url)
        if host:
            yield host.group(1)


def _occurs(piece: str, text: str) -> bool:
    if piece[:1].isdigit() or piece[:1] == "-":  # a number: not inside a longer one
        return re.search(rf"(?<![\d.]){re.escape(piece)}(?![\d])", text) is not None
    return piece in text


def _allowed(piece: str, policy: ToolPolicy | None, trusted_values: tuple[str, ...]) -> bool:
    lists = [trusted_values]
    if policy is not None:
        lists += [policy.allowed_recipients or (), policy.allowed_domains or ()]
    for allowed in lists:
        if not allowed:
            continue
        if piece.casefold() in (a.casefold() for a in allowed):
            return True
        if "@" in piece and recipient_allowed(piece, tuple(a for a in allowed if "@" in a)):
            return True
        domains = tuple(a for a in allowed if "@" not in a and "/" not in a)
        if "@" not in piece and "/" not in piece and domains and domain_allowed(piece, domains):
            return True
        host = _HOST.match(piece)
        if host and domains and domain_allowed(host.group(1).strip("[]"), domains):
            return True
    return False


def tainted_arguments(
    arguments: Mapping[str, JsonValue],
    deciding: list[str],
    context: Context,
    *,
    policy: ToolPolicy | None = None,
    trusted_values: tuple[str, ...] = (),
    unmask: Callable[[str], str] = str,
) -> list[Taint]:
    """The deciding arguments whose values came from untrusted data (see the module doc).

    ``unmask`` turns a placeholder back into its value for the allow-list comparison (the
    occurrence test compares values as the log holds them: placeholder to placeholder)."""
    if not context.untrusted or not deciding:
        return []
    untrusted = {source: _fold(text) for source, text in context.untrusted.items()}
    trusted = _fold("\n".join(context.trusted))
    out: list[Taint] = []
    for name in deciding:
        for piece in dict.fromkeys(_pieces(arguments.get(name))):
            folded = _fold(piece)
            sources = tuple(s for s, text in untrusted.items() if _occurs(folded, text))
            if not sources or _occurs(folded, trusted):
                continue
            if _allowed(unmask(piece), policy, trusted_values):
                continue
            out.append(Taint(name, piece, sources))
            break  # one finding per argument is enough to hold the call
    return out
