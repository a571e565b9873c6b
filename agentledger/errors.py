"""The one exception tree of agentledger.

::

    AgentLedgerError                 every error raised by agentledger
    ├── UsageError                   misuse: the caller must change something
    │   ├── WorkflowError            an invalid workflow file or agent graph
    │   ├── UnknownTaskError         no events exist for a task id
    │   └── ConfigurationError       bad settings, missing optional component
    └── RuntimeFailure               something failed while running
        ├── EventLogError            the log could not be read or written
        │   ├── CorruptEventError    a stored event could not be decoded (carries its offset)
        │   └── SequenceConflictError  two writers appended the same (task, seq)
        ├── ModelError               the LLM failed (retryable or not)
        └── ToolError                a tool failed while executing
            └── TransientToolError   ...in a way worth retrying (retryable=True)

Every message says what was wrong and, where there is one, what to do about it.
"""

from __future__ import annotations


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
