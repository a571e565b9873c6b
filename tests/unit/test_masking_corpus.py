"""Every value of the sensitive corpus is masked as its category, in plain text and in
JSON held inside a string right after every JSON escape, and masked JSON stays valid JSON
of the same shape."""

from __future__ import annotations

import json
import unicodedata

import orjson
import pytest

from agentledger.redaction import redact, redact_text
from agentledger.security.detectors import DEFAULT_DETECTORS, find
from tests.support.sensitive import Sensitive, corpus, leaked

CORPUS = corpus()
IDS = [f"{s.category}:{s.value[:24]}" for s in CORPUS]
# Every escape JSON has, as it appears in JSON source text.
ESCAPES = ["\\n", "\\t", '\\"', "\\\\", "\\/", "\\b", "\\f", "\\r", "\\u00e9", "\\u2028"]


@pytest.mark.parametrize("item", CORPUS, ids=IDS)
def test_each_value_is_found_as_its_category(item: Sensitive) -> None:
    masked = redact_text(item.text)
    assert not leaked([item], masked), masked
    assert f"[{item.category}]" in masked, masked


@pytest.mark.parametrize("item", CORPUS, ids=IDS)
def test_each_detector_reports_a_category_and_a_confidence(item: Sensitive) -> None:
    found = find(unicodedata.normalize("NFKC", item.text))  # as redact_text calls it
    assert found and all(0 < f.confidence <= 1 for f in found)
    assert item.category in {f.category for f in found}


# Values that name themselves (no "password:" or "passport" before them needed).
SELF_EVIDENT = [s for s in CORPUS if not s.needs_context]


@pytest.mark.parametrize("item", CORPUS, ids=IDS)
def test_a_value_alone_is_found_unless_it_needs_its_context(item: Sensitive) -> None:
    assert bool(find(unicodedata.normalize("NFKC", item.value))) != item.needs_context


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("what", ["value", "text"])
def test_a_value_right_after_any_escape_is_masked_and_json_stays_valid(
    escape: str, what: str
) -> None:
    for item in SELF_EVIDENT if what == "value" else CORPUS:
        value_json = json.dumps(getattr(item, what), ensure_ascii=False)[1:-1]
        # A model's answer: JSON text held in a string field of an event.
        source = '{"answer": "see' + escape + value_json + ', done", "n": [1, "x"]}'
        original = json.loads(source)
        event = {"type": "llm_call_completed", "content": source}
        masked = redact(event)
        inner = orjson.loads(masked["content"])  # still valid JSON
        assert set(inner) == {"answer", "n"} and inner["n"] == [1, "x"]  # same shape
        assert inner["answer"].endswith(", done")
        if escape != "\\u00e9":  # "seeéann@..." is one address as far as anyone can tell
            assert inner["answer"].startswith("see"), inner
        assert not leaked([item], masked["content"]), (escape, masked["content"])
        assert original["answer"] != inner["answer"]
        # The same JSON masked as text (what a log line or a cut-off answer gets).
        as_text = redact_text(source)
        assert orjson.loads(as_text)["n"] == [1, "x"], (escape, as_text)
        assert not leaked([item], as_text), (escape, as_text)


def test_json_inside_a_string_inside_json_is_walked() -> None:
    inner = json.dumps({"to": "ann.lee@example.com", "card": "4111 1111 1111 1111"})
    outer = json.dumps({"arguments": inner, "tool": "notify"})
    masked = redact({"content": outer})
    decoded = json.loads(json.loads(masked["content"])["arguments"])
    assert decoded == {"to": "[email]", "card": "[card]"}


def test_a_string_that_only_looks_like_json_is_masked_as_text() -> None:
    text = "[see ann.lee@example.com} and {more]"
    assert redact_text(text) == redact(text) == "[see [email]} and {more]"


def test_nothing_is_found_in_ordinary_event_text() -> None:
    ordinary = [
        "Revenue grew 12% in Q3 2024; see the notes of the last review (2024-10-01).",
        "expired at 2026-11-30 03:45:03 UTC, after escalation to oncall-lead",
        "order 12345, 3 items, total 99.90 EUR, shipped 30.11.2026 at 10:00",
        "sha1 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 and version 1.2.3",
        "input_tokens: 512, output_tokens: 128, max_tokens=100",
        "the bearer instrument and a token budget",
    ]
    for text in ordinary:
        assert find(text) == (), text


def test_keys_holding_values_are_masked_too() -> None:
    assert redact({"ann.lee@example.com": 1}) == {"[email]": 1}


def test_the_detectors_are_library_backed_where_a_library_exists() -> None:
    names = {d.name for d in DEFAULT_DETECTORS}
    assert names == {"secrets", "identifiers", "network", "contact"}
