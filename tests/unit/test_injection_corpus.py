"""The detector's rates on the labelled corpus never get worse than the committed figures.

``tests/fixtures/injection/rates.json`` holds the figures ``benchmarks/bench_injection.py``
reported when they were last improved; a change that detects fewer payloads or flags more
benign texts fails here. Raise the figures when a change improves them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentledger.security.injection import scan

CORPUS = Path(__file__).parent.parent / "fixtures" / "injection"
COMMITTED = json.loads((CORPUS / "rates.json").read_text())


def load(name: str) -> list[dict[str, str]]:
    lines = (CORPUS / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize(
    ("name", "payloads", "benign"),
    [
        ("corpus", "payloads.jsonl", "benign.jsonl"),
        ("heldout", "heldout_payloads.jsonl", "heldout_benign.jsonl"),
    ],
)
def test_rates_do_not_get_worse(name: str, payloads: str, benign: str) -> None:
    attacks, ordinary = load(payloads), load(benign)
    assert len(attacks) >= 30 and len(ordinary) >= 30
    missed = [a["id"] for a in attacks if not scan(a["text"])]
    flagged = [b["id"] for b in ordinary if scan(b["text"])]
    detection = 1 - len(missed) / len(attacks)
    false_positives = len(flagged) / len(ordinary)
    committed = COMMITTED[name]
    assert detection >= committed["detection_rate"] - 1e-9, f"newly missed among {missed}"
    assert false_positives <= committed["false_positive_rate"] + 1e-9, f"flagged {flagged}"


def test_the_corpus_covers_the_styles_and_languages_it_claims() -> None:
    attacks = load("payloads.jsonl") + load("heldout_payloads.jsonl")
    ordinary = load("benign.jsonl") + load("heldout_benign.jsonl")
    styles = {a["style"] for a in attacks}
    assert {
        "fake_tool_call",
        "fake_role",
        "encoded",
        "non_english",
        "handoff_request",
        "exfil_url",
        "markdown_image",
    } <= styles
    assert len({a["lang"] for a in attacks}) >= 8
    assert len({b["lang"] for b in ordinary}) >= 8
