"""Transports: the EventLog protocol, its backends, and the runners that drive processors."""

from agentledger.streams.log import CorruptRecord, EventLog, LogEntry, Recorded, TaskSummary
from agentledger.streams.memory import MemoryEventLog
from agentledger.streams.sqlite import SqliteEventLog

__all__ = [
    "CorruptRecord",
    "EventLog",
    "LogEntry",
    "MemoryEventLog",
    "Recorded",
    "SqliteEventLog",
    "TaskSummary",
]
