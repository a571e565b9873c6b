"""The one exception tree of agentledger.

::

    AgentLedgerError                 every error raised by agentledger
    ├── UsageError                   misuse: the caller must change something
    │   ├── WorkflowError            an invalid workflow file or agent graph
    │   ├── UnknownTaskError         no events exist for a task id
    │   ├── ConfigurationError       bad settings, missing optional component
    │   └── TaskLeasedError          another live process drives the task (its lease)
    └── RuntimeFailure               something failed while running
        ├── EventLogError            the log could not be read or written
        │   ├── CorruptEventError    a stored event could not be decoded (carries its offset)
        │   │   └── QuarantinedTaskError  an unfinished task holds one: it is not driven
        │   ├── SequenceConflictError  two writers appended the same (task, seq)
        │   ├── LeaseLostError       another process took this runner's task over
        │   ├── LaneClosedError      an exactly-once worker no longer holds the partition
        │   └── LedgerReplacedError  the ledger file was deleted or replaced under us
        ├── ModelError               the LLM failed (retryable or not)
        └── ToolError                a tool failed while executing
            └── TransientToolError   ...in a way worth retrying (retryable=True)

Every message says what was wrong and, where there is one, what to do about it.
"""

from __future__ import annotations

from typing import Any


class AgentLedgerError(Exception):
    """Root of every error agentledger raises."""


class UsageError(AgentLedgerError):
    """The caller asked for something that cannot work; fix the input and retry."""


class WorkflowError(UsageError):
    """A workflow file or agent graph is invalid. The message lists every problem found."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid workflow{where}:\n{lines}")


class UnknownTaskError(UsageError):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(
            f"no events for task {task_id!r} in this ledger; "
            "check the id (`agentledger tasks` lists them) and the --db path"
        )


class ConfigurationError(UsageError):
    """Settings or optional components are missing or inconsistent."""


class RuntimeFailure(AgentLedgerError):
    """Something failed while running; the log says what happened up to that point."""


class EventLogError(RuntimeFailure):
    pass


class CorruptEventError(EventLogError):
    """A stored record could not be decoded into a known event."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"event at offset {offset} cannot be decoded: {reason}")


class LaneClosedError(EventLogError):
    """An exactly-once worker appended for a partition whose transaction lane is closed (a
    rebalance moved or is moving it); retrying cannot help: its next holder redoes the work."""


class RecordTooLargeError(EventLogError):
    """A record is larger than a producer sends or a topic takes; retrying cannot help."""


class SequenceConflictError(EventLogError):
    def __init__(self, task_id: str, seq: int) -> None:
        self.task_id = task_id
        self.seq = seq
        super().__init__(
            f"task {task_id!r} already has an event at seq {seq}: another process is "
            "writing this task; run one runner per task"
        )


class ModelError(RuntimeFailure):
    """The model call failed. ``retryable`` says whether trying again may help."""

    def __init__(
        self, message: str, *, kind: str = "model_error", retryable: bool = False, attempts: int = 1
    ) -> None:
        self.kind = kind
        self.retryable = retryable
        self.attempts = attempts
        # What happened before the call gave up (llm.base.AttemptNote), recorded as events.
        self.trail: list[Any] = []
        super().__init__(message)


class ToolError(RuntimeFailure):
    """A tool raised while executing; the message is recorded in ToolCallFailed.

    ``retryable`` marks a transient failure (a dropped connection, a 503): the executor
    retries it with backoff, up to the tool's ``max_attempts``.
    """

    def __init__(self, message: str, *, kind: str = "tool_error", retryable: bool = False) -> None:
        self.kind = kind
        self.retryable = retryable
        super().__init__(message)


class TransientToolError(ToolError):
    """A failure that may go away if the call is tried again a little later."""

    def __init__(self, message: str, *, kind: str = "transient") -> None:
        super().__init__(message, kind=kind, retryable=True)


class QuarantinedTaskError(CorruptEventError):
    """A task holds a record that cannot be decoded, so it is not driven: driving it from a
    partial history could repeat a side effect or fail a task that could still finish."""

    def __init__(self, task_id: str, offset: int, seq: int | None, reason: str) -> None:
        super().__init__(offset, reason)
        self.task_id = task_id
        self.seq = seq
        where = f"offset {offset}" + (f" (seq {seq})" if seq is not None else "")
        Exception.__init__(
            self,
            f"task {task_id} is quarantined: its record at {where} cannot be decoded: {reason}. "
            "It is not driven, so nothing recorded runs twice; `agentledger doctor` checks the "
            "whole ledger, `agentledger events` shows the records around it",
        )


class TaskLeasedError(UsageError):
    """Another live process holds the task's lease (it is driving the task)."""

    def __init__(
        self,
        task_id: str,
        owner: str,
        pid: int,
        host: str,
        age_s: float,
        hint: str = "wait for it to end, or stop it first. Use --take-over only if that "
        "process is hung",
    ) -> None:
        self.task_id, self.owner, self.pid, self.host = task_id, owner, pid, host
        super().__init__(
            f"task {task_id} is being driven by another process (pid {pid} on {host}, "
            f"heartbeat {age_s:.0f}s ago); {hint}"
        )


class LeaseLostError(EventLogError):
    """This runner's lease was taken over by another process; it stopped driving the task."""


class LedgerReplacedError(EventLogError):
    """The ledger file was deleted or replaced under this process (its inode changed)."""
