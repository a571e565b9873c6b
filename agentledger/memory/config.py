"""``memory`` at the top of a workflow file: the embedder and where the index lives.

    memory:
      embedder: {provider: openai, model: text-embedding-3-small, dimensions: 1536,
                 base_url: "http://localhost:11434/v1", api_key_env: OPENAI_API_KEY}
      index: memory.db          # default: HOME/memory.db, beside the ledger

Agents get access with their own ``memory: {read: [...], write: [...], top_k: 5}``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agentledger.memory.embedders import EmbedderSettings
from agentledger.memory.service import MemoryService
from agentledger.settings import Settings
from agentledger.streams.log import EventLog


class MemoryConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    index: Path | None = None

    def index_path(self, settings: Settings) -> Path:
        return self.index if self.index is not None else settings.home / "memory.db"

    def open(self, log: EventLog, settings: Settings, *, fresh: bool = False) -> MemoryService:
        """The memory service over ``log``, its index beside the ledger (``fresh``: a new,
        empty index that a rebuild fills)."""
        return MemoryService.open(
            log, self.index_path(settings), self.embedder.build(), fresh=fresh
        )
