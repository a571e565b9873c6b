"""Memory events: a write to long-term memory, and its erasure (by key or namespace).

Long-term memory is a projection of these events (agentledger/memory/projection.py); the
events go through the one guarded write path, so they are masked like every other event.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.schemas.envelope import EventBase

NAMESPACE_PATTERN = r"^[A-Za-z0-9_.:@/-]{1,200}$"


class MemorySource(BaseModel):
    """Where a memory came from: who wrote it, in which task, through which call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["agent", "operator"] = "agent"
    subtask_id: str | None = None
    call_id: str | None = None
    idempotency_key: str | None = None


class MemoryWritten(EventBase):
    """A memory stored under ``namespace``/``key``; a later write of the same key replaces it."""

    type: Literal["memory_written"] = "memory_written"
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    key: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=20_000)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    source: MemorySource = Field(default_factory=MemorySource)


class MemoryErased(EventBase):
    """Forget one key (``key`` set) or a whole namespace (``key`` None): the index drops the
    values and the audit copy masks them."""

    type: Literal["memory_erased"] = "memory_erased"
    namespace: str = Field(pattern=NAMESPACE_PATTERN)
    key: str | None = None
    reason: str = ""
    requested_by: str | None = None
