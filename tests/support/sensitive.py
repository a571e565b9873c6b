"""The corpus of sensitive values (tests/fixtures/sensitive/corpus.json) and leak checks."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

CORPUS_FILE = Path(__file__).parent.parent / "fixtures" / "sensitive" / "corpus.json"


@dataclass(frozen=True)
class Sensitive:
    category: str
    text: str  # a sentence holding the value
    value: str  # what must never be seen unmasked
    needs_context: bool = False  # recognisable only in its text (a password after its name)

    def forms(self) -> set[str]:
        """The value as written and in NFKC form (either one showing is a leak)."""
        return {self.value, unicodedata.normalize("NFKC", self.value)}


def corpus() -> list[Sensitive]:
    data = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    return [Sensitive(**item) for item in data["values"]]


def leaked(corpus_: list[Sensitive], sink: str | bytes) -> list[Sensitive]:
    """The corpus entries whose value shows in ``sink`` (text, or UTF-8 / JSON-escaped bytes)."""
    text = sink.decode("utf-8", errors="replace") if isinstance(sink, bytes) else sink
    out = []
    for item in corpus_:
        for form in item.forms():
            escaped = json.dumps(form)[1:-1]  # as it looks inside JSON text
            if form in text or escaped in text:
                out.append(item)
                break
    return out
