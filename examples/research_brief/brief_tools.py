"""The research-brief workflow's tools: a search over the notes in ``corpus/`` and a save.

``search_notes`` is an Okapi BM25 ranking over passages (one paragraph each, labelled
with its note and heading), with a small stop-word list and a light suffix stemmer. It is
read-only and deterministic: the same query always returns the same passages in the same
order.

``save_brief`` writes the final markdown into the sandbox, at most once per idempotency
key: a repeated call with the same key (a retry, a replay) answers from the receipt the
first call left and does not write again.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import Field

from agentledger.tools import ToolContext, tool

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

# BM25 parameters: the usual defaults (term-frequency saturation, length normalisation).
_K1 = 1.5
_B = 0.75

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

_STOP_WORDS_TEXT = """
a about above after again against all also an and any are as at be because been before being
below between both but by can could did do does doing done down during each few for from
further had has have having he her here hers how i if in into is it its itself just me more
most my no nor not now of off on once only or other our ours out over own same she should so
some such than that the their theirs them then there these they this those through to too
under until up very was we were what when where which while who whom why will with would you
your
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ability", ""), ("ency", "ent"), ("ence", "ent"))


def stem(word: str) -> str:
    """A light suffix stemmer: enough to match 'retries' with 'retry' and 'keys' with 'key'."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, replacement in (
        ("ies", "y"),
        ("ied", "y"),
        ("ability", ""),
        ("ency", "ent"),
        ("ence", "ent"),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            base = word[: -len(suffix)]
            if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]  # running -> run, dropped -> drop
            return base
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The stemmed, stop-word-free terms of ``text``, in order."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


@dataclass(frozen=True, slots=True)
class Passage:
    source: str  # file name inside corpus/
    title: str  # the note's H1
    heading: str  # the section the paragraph sits in
    text: str
    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Index:
    passages: tuple[Passage, ...]
    doc_freq: dict[str, int]
    avg_len: float

    def idf(self, term: str) -> float:
        n, df = len(self.passages), self.doc_freq.get(term, 0)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))


def _passages(path: Path) -> list[Passage]:
    title, heading = path.stem, ""
    out: list[Passage] = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        block = block.strip()
        if block.startswith("# "):
            title = heading = block[2:].strip()
            continue
        if block.startswith("## "):
            heading = block[3:].strip()
            continue
        if not block:
            continue
        text = " ".join(block.split())
        # The title and heading say what a paragraph is about ("Failure modes"), so they
        # count towards it, the heading twice (a poor man's BM25F field weight).
        indexed = f"{title} {heading} {heading} {text}"
        out.append(Passage(path.name, title, heading, text, tuple(terms(indexed))))
    return out


@lru_cache(maxsize=4)
def load_index(corpus_dir: Path = CORPUS_DIR) -> _Index:
    """Index every ``*.md`` note in ``corpus_dir`` (cached per directory)."""
    passages = [p for path in sorted(corpus_dir.glob("*.md")) for p in _passages(path)]
    if not passages:
        raise FileNotFoundError(f"no markdown notes found in {corpus_dir}")
    doc_freq: Counter[str] = Counter()
    for p in passages:
        doc_freq.update(set(p.terms))
    avg_len = sum(len(p.terms) for p in passages) / len(passages)
    return _Index(tuple(passages), dict(doc_freq), avg_len)


def _bm25(index: _Index, query: list[str], passage: Passage) -> float:
    counts = Counter(passage.terms)
    norm = _K1 * (1 - _B + _B * len(passage.terms) / index.avg_len)
    score = 0.0
    for term in set(query):
        tf = counts.get(term, 0)
        if tf:
            score += index.idf(term) * tf * (_K1 + 1) / (tf + norm)
    return score


def _highlight(index: _Index, query: list[str], text: str) -> str:
    """The passage's sentence that matches the query best (with the next one if it is short)."""
    sentences = _SENTENCE_END.split(text)
    wanted = set(query)

    def weight(sentence: str) -> float:
        return sum(index.idf(t) for t in set(terms(sentence)) & wanted)

    best = max(range(len(sentences)), key=lambda i: (weight(sentences[i]), -i))
    chosen = sentences[best]
    if len(chosen) < 80 and best + 1 < len(sentences):
        chosen = f"{chosen} {sentences[best + 1]}"
    return chosen


@tool()
def search_notes(
    query: Annotated[str, Field(min_length=2, max_length=300, description="keywords to look for")],
    limit: Annotated[int, Field(ge=1, le=10, description="how many passages to return")] = 5,
) -> dict[str, Any]:
    """Search the team's notes on running LLM agents in production (keyword ranking, BM25).
    Returns the best passages, each with its ``source`` note (cite that file name), the
    note's ``title``, the section ``heading``, the ``passage``, its best-matching sentence
    as ``highlight``, the query terms it ``matched`` and a ``score``. No results means the
    notes do not cover the query.

    Read-only and deterministic: the same query always gives the same results.
    """
    index = load_index()
    query_terms = terms(query)
    ranked = sorted(
        (
            (score, i)
            for i, p in enumerate(index.passages)
            if (score := _bm25(index, query_terms, p)) > 0
        ),
        key=lambda item: (-item[0], item[1]),
    )
    return {
        "query": query,
        "terms": sorted(set(query_terms)),
        "results": [_result(index, query_terms, index.passages[i], s) for s, i in ranked[:limit]],
        "passages_searched": len(index.passages),
    }


def _result(index: _Index, query: list[str], passage: Passage, score: float) -> dict[str, Any]:
    return {
        "source": passage.source,
        "title": passage.title,
        "heading": passage.heading,
        "passage": passage.text,
        "highlight": _highlight(index, query, passage.text),
        "matched": sorted(set(query) & set(passage.terms)),
        "score": round(score, 3),
    }


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@tool(side_effect=True, risk="write")
def save_brief(
    markdown: Annotated[str, Field(min_length=1, max_length=200_000, description="the brief")],
    ctx: ToolContext,
) -> dict[str, Any]:
    """Save the final brief (markdown) as this task's brief file and return its ``path``
    and size in ``bytes``. Call it once, with the complete markdown.

    Writes ``<sandbox>/briefs/<task_id>.md``. A call repeated with the same idempotency key
    returns the first call's result with ``already_saved: true`` and writes nothing.
    """
    if not _SAFE_NAME.match(ctx.task_id) or not _SAFE_NAME.match(ctx.idempotency_key):
        raise ValueError(f"task id {ctx.task_id!r} cannot be used as a file name")
    briefs = ctx.sandbox / "briefs"
    receipts = briefs / ".receipts"
    receipts.mkdir(parents=True, exist_ok=True)
    receipt = receipts / f"{ctx.idempotency_key}.json"
    if receipt.exists():
        return {**orjson.loads(receipt.read_bytes()), "already_saved": True}
    target = briefs / f"{ctx.task_id}.md"
    data = markdown.encode("utf-8")
    _write_atomically(target, data)
    result = {"path": str(target), "bytes": len(data), "idempotency_key": ctx.idempotency_key}
    _write_atomically(receipt, orjson.dumps(result))
    return {**result, "already_saved": False}
