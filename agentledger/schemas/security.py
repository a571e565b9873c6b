"""Security events: untrusted content that looked like an attempt to steer an agent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from agentledger.schemas.envelope import EventBase


class InjectionMatch(BaseModel):
    """One detector match: the rule (the style), where the string sits in the screened
    value (``$.content``, ``$.items[2].text``), the character span within that string as
    it was screened (before masking, which may change lengths) and the matched text
    (at most 120 characters, masked like every fact)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    path: str
    start: int
    end: int
    text: str


class InjectionSuspected(EventBase):
    """Instruction-like or hidden content found in untrusted data, and what was done with it.

    ``source`` names where the data came from (``tool:read_file#c1``, ``input:doc``);
    ``rules`` the detector rules that matched; ``excerpt`` a short masked piece of the text;
    ``matches`` each match's rule, path and span; ``action`` the workflow's policy:
    ``flag`` (the default: recorded, nothing deleted), ``block`` (the content was replaced
    by a refusal), ``strip`` (the offending sentences were removed) or ``warn`` (kept; the
    older name of flag).
    """

    type: Literal["injection_suspected"] = "injection_suspected"
    subtask_id: str | None = None
    call_id: str | None = None
    source: str
    rules: list[str]
    excerpt: str
    action: Literal["flag", "block", "strip", "warn"]
    matches: list[InjectionMatch] = []
