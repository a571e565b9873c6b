"""Injection detector benchmark: detection and false-positive rates on the labelled corpus.

    python benchmarks/bench_injection.py           # a table per style and per language
    python benchmarks/bench_injection.py --json    # the figures as JSON

The corpus is ``tests/fixtures/injection/`` (``payloads.jsonl``: attacks labelled by style
and language; ``benign.jsonl``: ordinary documents, several of them written to look risky:
API docs with chat messages, base64 data, markdown images, "ignore the warning"). A text
counts as detected when ``scan`` finds anything in it. The corpus was written alongside
the rules, so these figures are an upper bound for text the rules were not tuned on; the
test ``tests/unit/test_injection_corpus.py`` keeps them from getting worse.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from agentledger.security.injection import scan

CORPUS = Path(__file__).parent.parent / "tests" / "fixtures" / "injection"


def load(name: str) -> list[dict[str, str]]:
    with (CORPUS / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def rates(payloads: list[dict[str, str]], benign: list[dict[str, str]]) -> dict[str, Any]:
    """Detection and false-positive rates of ``scan`` on one labelled set."""
    by_style: dict[str, list[bool]] = defaultdict(list)
    by_lang: dict[str, list[bool]] = defaultdict(list)
    missed: list[str] = []
    for item in payloads:
        hit = bool(scan(item["text"]))
        by_style[item["style"]].append(hit)
        by_lang[item["lang"]].append(hit)
        if not hit:
            missed.append(item["id"])
    false_by_lang: dict[str, list[bool]] = defaultdict(list)
    flagged: list[str] = []
    for item in benign:
        hit = bool(scan(item["text"]))
        false_by_lang[item["lang"]].append(hit)
        if hit:
            flagged.append(item["id"])
    return {
        "payloads": len(payloads),
        "benign": len(benign),
        "detection_rate": round(1 - len(missed) / len(payloads), 3),
        "false_positive_rate": round(len(flagged) / len(benign), 3),
        "detection_by_style": {k: round(sum(v) / len(v), 2) for k, v in sorted(by_style.items())},
        "detection_by_language": {k: round(sum(v) / len(v), 2) for k, v in sorted(by_lang.items())},
        "false_positives_by_language": {
            k: f"{sum(v)}/{len(v)}" for k, v in sorted(false_by_lang.items())
        },
        "missed": missed,
        "false_positives": flagged,
    }


def measure(repeat: int = 20) -> dict[str, Any]:
    """Rates on the tuning corpus and on the held-out one, and the time per text."""
    tuned = (load("payloads.jsonl"), load("benign.jsonl"))
    heldout = (load("heldout_payloads.jsonl"), load("heldout_benign.jsonl"))
    texts = [item["text"] for group in (*tuned, *heldout) for item in group]
    started = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            scan(text)
    elapsed = time.perf_counter() - started
    # A tool result is usually a page, not a sentence: the benign texts as one ~10 KB page.
    page = "\n".join(item["text"] for item in (*tuned[1], *heldout[1]))
    page = (page * (10_000 // len(page) + 1))[:10_000]
    started = time.perf_counter()
    for _ in range(repeat):
        scan(page)
    page_us = (time.perf_counter() - started) / repeat * 1e6
    # And an ordinary technical page: the first 10 KB of this project's architecture doc.
    doc = (CORPUS.parent.parent.parent / "docs" / "architecture.md").read_text()[:10_000]
    started = time.perf_counter()
    for _ in range(repeat):
        scan(doc)
    doc_us = (time.perf_counter() - started) / repeat * 1e6
    return {
        "corpus": rates(*tuned),
        "heldout": rates(*heldout),
        "us_per_text": round(elapsed / (repeat * len(texts)) * 1e6, 1),
        "mean_chars": round(sum(map(len, texts)) / len(texts)),
        "us_per_10kb_page": round(page_us),
        "us_per_10kb_docs": round(doc_us),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = measure()
    if args.json:
        print(json.dumps(figures, indent=2, ensure_ascii=False))
        return 0
    for name, title in (("corpus", "tuning corpus"), ("heldout", "held-out corpus")):
        r = figures[name]
        print(
            f"{title}: detection {r['detection_rate']:.1%} of {r['payloads']} payloads, "
            f"false positives {r['false_positive_rate']:.1%} of {r['benign']} benign texts"
        )
        print(
            "  detection by style:  "
            + ", ".join(f"{k} {v:.0%}" for k, v in r["detection_by_style"].items())
        )
        print(
            "  detection by language: "
            + ", ".join(f"{k} {v:.0%}" for k, v in r["detection_by_language"].items())
        )
        print(
            "  false positives by language: "
            + ", ".join(f"{k} {v}" for k, v in r["false_positives_by_language"].items())
        )
        print(f"  missed: {', '.join(r['missed']) or 'none'}")
        print(f"  false positives: {', '.join(r['false_positives']) or 'none'}")
    print(
        f"scan: {figures['us_per_text']} µs per text (mean {figures['mean_chars']} chars), "
        f"{figures['us_per_10kb_page']} µs per 10 KB page of the (trigger-dense) benign texts, "
        f"{figures['us_per_10kb_docs']} µs per 10 KB of docs/architecture.md"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
