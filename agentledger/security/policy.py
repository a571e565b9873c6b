"""Security settings of a workflow, and per-tool policies checked before a call runs.

In a workflow file::

    security:
      injection: strip        # block | strip | warn  (what to do with suspected injection)
      primary_log: masked     # masked | raw          (default: AGENTLEDGER_PRIMARY_LOG, masked)
      outbound: mask          # mask | block          (raw personal data leaving the system)
    tools:
      send_email:
        function: "mail_tools:send_email"
        policy: {allowed_recipients: ["ops@example.com", "@example.org"]}
      fetch:
        function: "agentledger.tools.builtin:http_fetch"
        policy: {allowed_domains: [docs.python.org]}
      pay:
        function: "bank:pay"
        policy: {max_amount: 100, check: "bank_policy:check_payee"}

A policy sees the arguments with placeholders resolved (the real recipient, the real URL)
and the task context; a call that breaks it is refused before it runs
(``tool_call_rejected``, ``error_kind: policy_violation``) and the agent is told why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger._imports import load_object
from agentledger.errors import ConfigurationError
from agentledger.projections.task_state import TaskState
from agentledger.security.lookalike import canonical_address, canonical_domain, lookalike_of
from agentledger.security.release import ReleaseGrant

__all__ = [
    "PolicyCheck",
    "PolicyContext",
    "SecurityPolicy",
    "ToolPolicy",
    "ToolPolicyEntry",
    "domain_allowed",
    "recipient_allowed",
]


class SecurityPolicy(BaseModel):
    """A workflow's ``security:`` block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    injection: Literal["flag", "block", "strip", "warn"] = "flag"
    primary_log: Literal["masked", "raw"] | None = None  # None: the setting decides (masked)
    outbound: Literal["mask", "block"] = "mask"
    # Secrets a tool with risk external may receive raw (see security/release.py).
    release: tuple[ReleaseGrant, ...] = ()
    # A side effect steered by untrusted data (see security/provenance.py).
    provenance: Literal["refuse", "approve", "off"] = "refuse"
    trusted_values: tuple[str, ...] = ()  # recipients, @domains, domains, values always trusted
    untrusted_inputs: tuple[str, ...] = ()  # goal inputs holding third-party content
    # Domains links in the final result may point to (see security/links.py); None: none
    # listed, so images and URLs with a query string are neutralised, plain links kept.
    link_domains: tuple[str, ...] | None = None

    @property
    def masked(self) -> bool:
        return self.primary_log != "raw"


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy check knows about the call besides its arguments."""

    task_id: str
    subtask_id: str
    agent: str
    tool: str
    state: TaskState  # the task as of the model response that asked for the call


PolicyCheck = Callable[[Mapping[str, JsonValue], PolicyContext], "list[str] | str | None"]
"""``check(arguments, context)`` returns the problems (none: the call may run)."""


@dataclass(frozen=True)
class ToolPolicy:
    allowed_domains: tuple[str, ...] | None = None
    allowed_recipients: tuple[str, ...] | None = None
    max_amount: float | None = None
    amount_argument: str = "amount"
    check: PolicyCheck | None = None
    check_name: str | None = None

    def problems(self, arguments: Mapping[str, JsonValue], context: PolicyContext) -> list[str]:
        """Why this call may not run; empty when it may."""
        out: list[str] = []
        strings = list(_strings(arguments))
        if self.allowed_domains is not None:
            for url in (u for s in strings for u in _URL.findall(s)):
                host = urlsplit(url).hostname or ""
                if not domain_allowed(host, self.allowed_domains):
                    out.append(f"{url[:200]!r}: " + _refusal("domain", host, self.allowed_domains))
        if self.allowed_recipients is not None:
            for address in (a for s in strings for a in _EMAIL.findall(s)):
                if not recipient_allowed(address, self.allowed_recipients):
                    out.append(_refusal("recipient", address, self.allowed_recipients))
        if self.max_amount is not None:
            amount = arguments.get(self.amount_argument)
            if isinstance(amount, int | float) and amount > self.max_amount:
                out.append(
                    f"{self.amount_argument} {amount:g} is over the maximum {self.max_amount:g}"
                )
        if self.check is not None:
            out.extend(self._run_check(arguments, context))
        return out

    def _run_check(self, arguments: Mapping[str, JsonValue], context: PolicyContext) -> list[str]:
        assert self.check is not None
        try:
            result = self.check(arguments, context)
        except Exception as exc:  # a broken check refuses the call: fail closed
            return [f"policy check {self.check_name} failed: {type(exc).__name__}: {exc}"]
        if not result:
            return []
        return [result] if isinstance(result, str) else [str(p) for p in result]


class ToolPolicyEntry(BaseModel):
    """``tools.<name>.policy`` in a workflow file."""

    model_config = ConfigDict(extra="forbid")

    allowed_domains: list[str] | None = None
    allowed_recipients: list[str] | None = None
    max_amount: float | None = Field(default=None, ge=0)
    amount_argument: str = "amount"
    check: str | None = None

    def build(self, base_dir: Path | None, tool: str) -> ToolPolicy:
        """The policy, with its ``check`` imported. Raises ConfigurationError."""
        check: PolicyCheck | None = None
        if self.check:
            obj = load_object(self.check, base_dir=base_dir, what=f"policy check of {tool!r}")
            if not callable(obj):
                raise ConfigurationError(f"policy check {self.check!r} of {tool!r} is not callable")
            check = obj
        return ToolPolicy(
            allowed_domains=_lower(self.allowed_domains),
            allowed_recipients=_lower(self.allowed_recipients),
            max_amount=self.max_amount,
            amount_argument=self.amount_argument,
            check=check,
            check_name=self.check,
        )


def _lower(items: list[str] | None) -> tuple[str, ...] | None:
    return None if items is None else tuple(i.strip().lower() for i in items)


def domain_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` is an allowed domain or a subdomain of one (``docs.example.com`` under
    ``example.com``). Both sides are compared in canonical form (NFKC, case folded,
    IDNA-encoded: see security/lookalike.py), so a homoglyph never matches."""
    canonical = canonical_domain(host)
    if canonical is None:
        return False
    domains = (d for a in allowed if (d := canonical_domain(a.lstrip("@"))) is not None)
    return any(canonical == d or canonical.endswith("." + d) for d in domains)


def recipient_allowed(address: str, allowed: tuple[str, ...]) -> bool:
    """``address`` is on the list, or its domain is (an ``@domain`` entry); compared in
    canonical form, so ``x@\\u0435xample.com`` (Cyrillic e) never passes ``@example.com``."""
    canonical = canonical_address(address)
    if canonical is None:
        return False
    domain = canonical.rpartition("@")[2]
    for entry in allowed:
        if entry.startswith("@"):
            if canonical_domain(entry[1:]) == domain:
                return True
        elif canonical_address(entry) == canonical:
            return True
    return False


def _refusal(what: str, value: str, allowed: tuple[str, ...]) -> str:
    imitated = lookalike_of(value, allowed)
    listed = ", ".join(allowed) or "none"
    if imitated is not None:
        return (
            f"{what} {value} only looks like the allowed {imitated!r}: it is spelled with "
            f"look-alike characters (canonical form {_canonical(value)!r}); not allowed ({listed})"
        )
    if what == "domain":
        return f"host {value!r} is not an allowed domain ({listed})"
    return f"recipient {value} is not an allowed recipient ({listed})"


def _canonical(value: str) -> str | None:
    return canonical_address(value) if "@" in value else canonical_domain(value)


_URL = re.compile(r"https?://[^\s\"'<>]+", re.IGNORECASE)
# Unicode letters too: an ASCII-only pattern never even saw ``x@\u0435vil.t\u0435st`` (Cyrillic e).
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_][\w-]+")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
