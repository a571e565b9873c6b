"""What a processor may read: the task state as of its event, and the injected runtime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agentledger.agents.breakers import Breakers
from agentledger.agents.workflow import Workflow
from agentledger.llm.base import ChatModel
from agentledger.llm.pricing import PriceTable
from agentledger.projections.task_state import TaskState
from agentledger.schemas import Event, EventBase
from agentledger.security.masking import Masker
from agentledger.tools.registry import MemoryAccess


@dataclass(frozen=True)
class Runtime:
    """The clients and definitions processors use; the same in every deployment shape."""

    workflow: Workflow
    models: Mapping[str, ChatModel]  # by agent name
    prices: PriceTable
    sandbox: Path
    # Circuit breakers protect downstream services across tasks: per process, not per task.
    breakers: Breakers = field(default_factory=Breakers, compare=False)
    masker: Masker = field(default_factory=Masker)  # placeholders for the primary log, and vault
    memory: MemoryAccess | None = None  # long-term memory (agentledger/memory), when declared

    async def aclose(self) -> None:
        """Close the models' HTTP connections (models without ``aclose`` need none)."""
        for model in {id(m): m for m in self.models.values()}.values():
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()
        close_memory = getattr(self.memory, "aclose", None)
        if close_memory is not None:
            await close_memory()
        if self.workflow.mcp is not None:
            await self.workflow.mcp.aclose()


@dataclass(frozen=True)
class ProcessorContext:
    state: TaskState  # as of the event being handled, never later
    runtime: Runtime
    recovering: bool = False  # the event was in the log before this process started


class Processor(Protocol):
    """Consumes one event, returns the events it causes. Never writes state itself."""

    handles: frozenset[str]

    async def handle(self, event: Event, ctx: ProcessorContext) -> list[EventBase]: ...
