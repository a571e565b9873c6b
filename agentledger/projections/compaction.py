"""What a ``context_summarized`` event does to an agent's turns.

Folding the event replaces the compacted leading turns with one summary turn, so every
later prompt, a replay and a resume see the same context. The agents' context window
(``agents/context_window.py``) decides when and what to compact; this is the pure part
both it and ``TaskState`` apply.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.llm.base import Message

SUMMARY_HEADER = "Summary of your earlier work on this subtask ({n} turns compacted):"


def summary_message(summary: str, turns_compacted: int) -> Message:
    """The turn that stands for the compacted ones. Untrusted: it digests tool results."""
    header = SUMMARY_HEADER.format(n=turns_compacted)
    return Message(role="user", content=f"{header}\n<data>\n{summary}\n</data>")


def compact_turns(turns: Sequence[Message], cut: int, summary: str) -> tuple[Message, ...]:
    """The turns after compaction. Pure: TaskState folds ``context_summarized`` with it."""
    return (summary_message(summary, cut), *turns[cut:])
