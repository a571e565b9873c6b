"""Which tool calls need a person's approval, and what happens when nobody answers.

Workflow file::

    approvals:
      min_risk: destructive      # read < write < external < destructive; null: only per-tool
      timeout_s: 86400           # how long a request waits
      on_timeout: deny           # or escalate (once, to escalate_to), then deny
      escalate_to: oncall-lead
      escalation_timeout_s: 3600
    tools:
      wipe_table: {function: "ops:wipe_table", requires_approval: true}

A tool's own ``requires_approval`` (from ``@tool`` or its workflow entry) wins over the
risk rule either way. Kept apart from the processors so ``workflow.py`` can import it.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentledger.schemas import ApprovalRequested, EventBase, ToolCallRequested, utc_now
from agentledger.schemas.approvals import OnTimeout
from agentledger.tools.registry import RISK_ORDER, Risk, Tool

if TYPE_CHECKING:
    from agentledger.agents.context import ProcessorContext

_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: easy to read out and type


class ApprovalPolicy(BaseModel):
    """The ``approvals`` block of a workflow. The default gates destructive tools only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_risk: Risk | None = "destructive"
    timeout_s: float = Field(default=86_400.0, gt=0)
    on_timeout: OnTimeout = "deny"
    escalate_to: str | None = Field(default=None, min_length=1)
    escalation_timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _escalation_needs_someone(self) -> Self:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout: escalate needs escalate_to (who decides next)")
        return self

    def requires(self, tool: Tool) -> bool:
        """Whether a call of ``tool`` waits for approval."""
        if tool.requires_approval is not None:
            return tool.requires_approval
        return self.min_risk is not None and RISK_ORDER[tool.risk] >= RISK_ORDER[self.min_risk]


def approval_gate(event: ToolCallRequested, ctx: ProcessorContext) -> list[EventBase] | None:
    """What the tool executor does instead of running ``event``'s call: ``None`` when the
    call needs no approval, else the ``approval_requested`` that pauses it (nothing when
    this call already has one)."""
    wf = ctx.runtime.workflow
    tool = wf.tools.get(event.tool)
    held = f"{event.subtask_id}/{event.call_id}" in ctx.state.held_calls  # untrusted targets
    if tool is None or not (held or wf.approvals.requires(tool)):
        return None
    ident = approval_id(event.task_id, event.idempotency_key, event.call_id)
    if ident in ctx.state.approvals:
        return []  # its decision drives the call (see agents/approvals.py)
    policy = wf.approvals
    now = utc_now()
    return [
        ApprovalRequested.caused_by(
            event,
            approval_id=ident,
            subtask_id=event.subtask_id,
            call_id=event.call_id,
            tool=event.tool,
            arguments=event.arguments,
            idempotency_key=event.idempotency_key,
            risk=tool.risk,
            occurred_at=now,
            expires_at=now + timedelta(seconds=policy.timeout_s),
            on_timeout=policy.on_timeout,
            escalate_to=policy.escalate_to,
            escalation_timeout_s=policy.escalation_timeout_s or policy.timeout_s,
        )
    ]


def approval_id(task_id: str, idempotency_key: str, call_id: str) -> str:
    """A short id a person can type: ``ap-`` and 7 characters, derived from the call.

    31**7 (2.7e10) values: unique in practice across a ledger; the CLI still refuses an
    ambiguous one and asks for ``--task``.
    """
    seed = f"{task_id}/{idempotency_key}/{call_id}".encode()
    n = int.from_bytes(hashlib.sha256(seed).digest()[:8])
    chars = []
    for _ in range(7):
        n, r = divmod(n, len(_ALPHABET))
        chars.append(_ALPHABET[r])
    return "ap-" + "".join(chars)
