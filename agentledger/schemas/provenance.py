"""Provenance events: raw values released to a tool, and side effects steered by untrusted data."""

from __future__ import annotations

from typing import Literal

from agentledger.schemas.envelope import EventBase


class RawValueReleased(EventBase):
    """A secret's raw value was resolved from the vault into one argument of a tool call.

    Personal data a tool declares (``send_email.to: email``) is released silently, as the
    tool's declaration says; a secret (an API key, a token, a password) only when the tool
    declares it for that argument, and for a tool with risk ``external`` only when the
    workflow also grants it (``security.release``). Each such release is this event.
    ``placeholder`` is what the log holds instead of the value; ``granted_by`` is
    ``tool`` (the declaration sufficed) or ``workflow`` (an external tool, granted).
    """

    type: Literal["raw_value_released"] = "raw_value_released"
    subtask_id: str
    call_id: str
    tool: str
    argument: str
    category: str
    placeholder: str
    granted_by: Literal["tool", "workflow"]


class UntrustedArgument(EventBase):
    """A call with side effects or risk ``external`` was asked for with an argument that
    decides where or what (a recipient, a URL, a path, an amount) taken from untrusted data.

    ``value`` is the argument's value as the log holds it (masked); ``sources`` name the
    untrusted content it occurs in (``tool:read_file#c1``, ``agent:researcher#r`` ...) and
    not in any trusted content; ``action`` is the workflow's ``security.provenance``:
    ``refuse`` (the call is refused, ``tool_call_rejected``) or ``approve`` (the call waits
    for a person, ``approval_requested``).
    """

    type: Literal["untrusted_argument"] = "untrusted_argument"
    subtask_id: str
    call_id: str
    tool: str
    argument: str
    value: str
    sources: list[str]
    action: Literal["refuse", "approve"]
