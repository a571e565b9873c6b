"""Pending approvals as a person reads them on a terminal: one line each, and what a run
that stops for approvals prints. Shared by ``agentledger approvals`` and ``run``/``resume``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TextIO

import orjson

from agentledger.projections.approvals import ApprovalState
from agentledger.projections.task_state import TaskState
from agentledger.redaction import redact_text
from agentledger.schemas import ApprovalDenied, ApprovalGranted, utc_now

Sent = dict[str, ApprovalGranted | ApprovalDenied]
"""Decisions produced to Kafka that no worker has stamped yet, by approval id."""


def _age(delta_s: float) -> str:
    s = int(abs(delta_s))
    text = (
        f"{s // 86400}d{s % 86400 // 3600}h"
        if s >= 86400
        else (f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s")
    )
    return text


def _arguments(a: ApprovalState) -> str:
    return orjson.dumps(dict(a.arguments), option=orjson.OPT_SORT_KEYS).decode()


def describe_pending(
    state: TaskState, now: datetime | None = None, sent: Sent | None = None
) -> list[str]:
    """One line per approval the task waits for: id, tool and arguments, who, when."""
    now = now or utc_now()
    lines = []
    for a in state.pending_approvals:
        left = (a.expires_at - now).total_seconds()
        expiry = f"expires in {_age(left)}" if left > 0 else f"EXPIRED {_age(left)} ago"
        who = f", escalated to {a.escalate_to}" if a.escalations else ""
        on_its_way = (sent or {}).get(a.id)
        if on_its_way is not None:
            who += f"; {decision_text(on_its_way)}, not yet recorded by a worker"
        lines.append(
            f"  {a.id}  {a.tool}({_arguments(a)})  agent {a.agent}, subtask {a.subtask_id}, "
            f"risk {a.risk}, asked {_age((now - a.requested_at).total_seconds())} ago, "
            f"{expiry}{who}"
        )
    return lines


def decision_text(event: ApprovalGranted | ApprovalDenied) -> str:
    """Who decided: ``granted by NAME`` or ``denied by NAME``."""
    if isinstance(event, ApprovalGranted):
        return f"granted by {event.approved_by}"
    return f"denied by {event.denied_by}"


def print_waiting(state: TaskState, out: TextIO) -> None:
    """What a run that stops for approvals tells the person who must decide."""
    pending = state.pending_approvals
    print(
        f"task {state.task_id} is waiting for approval of {len(pending)} tool "
        f"call{'s' if len(pending) != 1 else ''}:",
        file=out,
    )
    for line in describe_pending(state):
        print(redact_text(line), file=out)
    print("decide with:", file=out)
    for a in pending:
        print(f"  agentledger approve {a.id} [--note TEXT]", file=out)
        print(f'  agentledger deny {a.id} --reason "..."', file=out)
