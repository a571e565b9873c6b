"""Security events: untrusted content that looked like an attempt to steer an agent."""

from __future__ import annotations

from typing import Literal

from agentledger.schemas.envelope import EventBase


class InjectionSuspected(EventBase):
    """Instruction-like or hidden content found in untrusted data, and what was done with it.

    ``source`` names where the data came from (``tool:read_file#c1``, ``input:doc``);
    ``rules`` the detector rules that matched; ``excerpt`` a short masked piece of the text;
    ``action`` the workflow's policy: ``block`` (the content was replaced by a refusal),
    ``strip`` (the offending spans were removed) or ``warn`` (kept as it was).
    """

    type: Literal["injection_suspected"] = "injection_suspected"
    subtask_id: str | None = None
    call_id: str | None = None
    source: str
    rules: list[str]
    excerpt: str
    action: Literal["flag", "block", "strip", "warn"]
