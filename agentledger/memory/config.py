"""``memory`` at the top of a workflow file: the embedder and where the index lives.

    memory:
      embedder: {provider: openai, model: text-embedding-3-small, dimensions: 1536,
                 base_url: "http://localhost:11434/v1", api_key_env: OPENAI_API_KEY}
      index: memory.db          # default: beside the ledger (HOME/memory.db)

Agents get access with their own ``memory: {read: [...], write: [...], top_k: 5}``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentledger.memory.embedders import EmbedderSettings
from agentledger.memory.service import MemoryService
from agentledger.settings import Settings
from agentledger.streams.log import EventLog
from agentledger.streams.sqlite import SqliteEventLog


class MemoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    index: Path | None = None

    def index_path(self, settings: Settings, ledger: Path | None = None) -> Path:
        """``index``, else beside the ledger: ``memory.db`` next to ``ledger.db``, or
        ``NAME.memory.db`` next to ``NAME.db`` (an index follows exactly one ledger)."""
        if self.index is not None:
            return self.index
        ledger = ledger or settings.ledger_path
        if ledger.name == "ledger.db":
            return ledger.with_name("memory.db")
        return ledger.with_name(f"{ledger.stem}.memory.db")

    def open(
        self, log: EventLog | None, settings: Settings, *, fresh: bool = False
    ) -> MemoryService:
        """The memory service over ``log`` (None: the SQLite ledger of ``settings``), its
        index beside the ledger (``fresh``: a new, empty index that a rebuild fills)."""
        if log is None:
            log = SqliteEventLog(settings.ledger_path)
        ledger = getattr(log, "path", None)
        return MemoryService.open(
            log,
            self.index_path(settings, ledger if isinstance(ledger, Path) else None),
            self.embedder.build(),
            fresh=fresh,
        )
