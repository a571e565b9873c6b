"""Untrusted text on a terminal: no control sequence reaches it.

Goals, model output and tool results end up in ``run``, ``events``, ``status``, ``replay``
and ``tasks``. Written raw, an ESC or CSI in any of them could move the cursor, rewrite
earlier lines, set the window title or hide text. ``TerminalText`` wraps the stream a
command prints to and shows every C0/C1 control character (except newline and tab), DEL
and the bidirectional overrides as a visible escape such as ``\\x1b``.

    out = TerminalText(sys.stdout)
    print("\\x1b[2J goal", file=out)   # prints: \\x1b[2J goal
"""

from __future__ import annotations

from typing import TextIO

_KEEP = {"\n", "\t"}
_CONTROL = [c for c in range(0x20) if chr(c) not in _KEEP] + list(range(0x7F, 0xA0))
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_TABLE = {c: f"\\x{c:02x}" for c in _CONTROL} | {c: f"\\u{c:04x}" for c in _BIDI}


def escape(text: str) -> str:
    """``text`` with control characters shown as visible escapes (newline and tab kept)."""
    return text.translate(_TABLE)


class TerminalText:
    """A text stream that escapes control characters in everything written through it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(escape(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)
