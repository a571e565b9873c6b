"""Ownership events: who drives a task, and a run that stopped before the task ended.

A runner holds a lease on the task it drives (streams/lease.py). Taking a lease that
another process held is a fact worth keeping; so is a run stopped by a signal, with what
it left for ``resume``.
"""

from __future__ import annotations

from typing import Literal

from agentledger.schemas.envelope import EventBase


class TaskLeaseTakenOver(EventBase):
    """This runner took the task's lease from another owner before driving it."""

    type: Literal["task_lease_taken_over"] = "task_lease_taken_over"
    owner: str  # the new owner: host:pid:nonce
    previous_owner: str
    previous_pid: int
    previous_host: str
    previous_heartbeat_age_s: float  # seconds since the previous owner last renewed it
    reason: Literal["stale", "owner_gone", "forced"]


class RunInterrupted(EventBase):
    """A run stopped on a signal before the task ended; ``resume`` continues it."""

    type: Literal["run_interrupted"] = "run_interrupted"
    signal: str  # SIGTERM | SIGINT
    grace_s: float  # how long in-flight work was given to finish
    finished_in_grace: int  # reactions that finished (and were recorded) within the grace
    # reactions still running when the grace ran out, e.g. "tool_call_started#12"
    cut_short: list[str]
