"""Long-term and episodic memory: events in the log, a vector index projected from them.

See docs/memory.md. The pieces, lowest first: ``embedders`` (text to vectors), ``store``
(the sqlite-vec index file), ``projection`` (the fold from events to index changes),
``service`` (what tools and the CLI read through), ``access`` (per-agent namespaces),
``tools`` (memory_search, memory_write, memory_episodes), ``config`` (the workflow block).
"""

from agentledger.memory.access import MemorySpec
from agentledger.memory.embedders import EmbedderSettings, HashingEmbedder, OpenAIEmbedder
from agentledger.memory.service import MemoryService
from agentledger.memory.store import MemoryItem, MemoryStore

__all__ = [
    "EmbedderSettings",
    "HashingEmbedder",
    "MemoryItem",
    "MemoryService",
    "MemorySpec",
    "MemoryStore",
    "OpenAIEmbedder",
]
