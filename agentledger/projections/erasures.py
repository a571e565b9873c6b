"""Erased memories as a read-side projection: the texts ``memory_erased`` forgot.

The primary log is append-only, so a ``memory_written`` event keeps its (masked) text after
the memory is forgotten. The memory index and the audit copy drop it (memory/projection.py,
audit/erasure.py); views that read the log itself (the web console) fold the log into
``Erasures`` and show each event through ``scrub``, with every forgotten text replaced by
``[erased]`` — the write, the tool call that asked for it, the search results that returned
it — as the audit copy does.

    erasures = Erasures()
    for event in log: erasures = erasures.evolve(event)   # or erasures.take(event)
    shown = erasures.scrub(event)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentledger.schemas import EventBase
from agentledger.schemas.codec import EventDecodeError, from_dict, to_dict
from agentledger.schemas.memory import MemoryErased, MemoryWritten

ERASED = "[erased]"


@dataclass
class Erasures:
    """Texts written under each namespace/key, and the texts forgotten."""

    written: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    needles: list[str] = field(default_factory=list)  # longest first

    def take(self, event: EventBase) -> None:
        """Fold one event in (memory writes and erasures; every other event is ignored)."""
        if isinstance(event, MemoryWritten):
            if event.text != ERASED:
                self.written.setdefault((event.namespace, event.key), set()).add(event.text)
        elif isinstance(event, MemoryErased):
            forgotten = {
                text
                for (namespace, key), texts in self.written.items()
                if namespace == event.namespace and event.key in (None, key)
                for text in texts
            }
            if forgotten:
                self.needles = sorted(set(self.needles) | forgotten, key=len, reverse=True)

    def scrub(self, event: EventBase) -> EventBase:
        """``event`` with every forgotten text replaced by ``[erased]`` inside its string
        values (never its field names); the event itself when it holds none."""
        if not self.needles:
            return event
        raw = to_dict(event)
        scrubbed = self._walk(raw)
        if scrubbed == raw:
            return event
        try:
            return from_dict(scrubbed)
        except EventDecodeError:  # a constrained field held the text: mask the free text
            return event.model_copy(
                update={k: v for k, v in scrubbed.items() if isinstance(v, str) and v != raw[k]}
            )

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            for needle in self.needles:
                value = value.replace(needle, ERASED)
            return value
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value
