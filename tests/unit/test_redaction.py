"""Masking of personal data and secrets: a corpus of what must go and what must stay."""

from __future__ import annotations

import time

import pytest

from agentledger.redaction import MARKERS, redact, redact_text

# (text, expected) — each finding replaced by its marker, everything else untouched.
MASKED = [
    # e-mail addresses
    ("mail ann.lee+news@example.co.uk today", "mail [email] today"),
    ("<bob_smith@mail.example.org>", "<[email]>"),
    # phone numbers
    ("call +44 20 7946 0958 now", "call [phone] now"),
    ("US (555) 123-4567 or 555-123-4567", "US [phone] or [phone]"),
    ("intl +14155552671.", "intl [phone]."),
    ("fr +33 1 42 68 53 00", "fr [phone]"),
    # card numbers that pass Luhn
    ("visa 4111 1111 1111 1111 exp", "visa [card] exp"),
    ("mc 5500-0055-5555-5559", "mc [card]"),
    ("amex 378282246310005", "amex [card]"),
    # IBANs that pass mod-97, spaced or compact, followed by an upper-case word
    ("pay DE89 3704 0044 0532 0130 00 OK", "pay [iban] OK"),
    ("GB82WEST12345698765432", "[iban]"),
    ("iban: NL91ABNA0417164300;", "iban: [iban];"),
    # IP addresses
    ("from 192.168.1.20 via 10.0.0.1:8080", "from [ip] via [ip]:8080"),
    ("v6 2001:db8::8a2e:370:7334 and ::1 and fe80::1", "v6 [ip] and [ip] and [ip]"),
    ("mapped ::ffff:192.0.2.1 ok", "mapped [ip] ok"),
    # API keys
    ("OPENAI sk-proj-abcdefghijklmnop1234", "OPENAI [api_key]"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [api_key]"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [api_key]"),
    ("slack xoxb-1234567890-abcdefghij", "slack [api_key]"),
    ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "google [api_key]"),
    # key=value secrets keep the name
    ("api_key=abc123def&x=1", "api_key=[secret]&x=1"),
    ("password: hunter22", "password: [secret]"),
    ('{"token": "zzz-yyy-xxx"}', '{"token": "[secret]"}'),
    ("CLIENT_SECRET=s3cr3t-value", "CLIENT_SECRET=[secret]"),
    # bearer tokens and JWTs
    ("Authorization: Bearer abcdef1234567890abcdef", "Authorization: Bearer [token]"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
        "jwt [token]",
    ),
]

KEPT = [
    "card-like but not Luhn: 4111 1111 1111 1112",
    "IBAN-like but not mod-97: GB00WEST12345698765432",
    "at 2024-05-01T10:00:00.123456+00:00 took 1234.5 ms",
    "event 0190f3e4-7b2c-7def-8abc-0123456789ab seq 42",
    "version 1.2.3 and 1.2.3.4.5 and 12:30:45",
    "idempotency_key=task-1/call-7 max_tokens=100 input_tokens: 42",
    "the bearer instrument and a token budget",
    "std::vector and std::map",
    "short",
    "order 12345, 3 items, total 99.90 EUR",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_findings_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_lookalikes_are_kept(text: str) -> None:
    assert redact_text(text) == text


def test_masking_is_idempotent() -> None:
    for text, expected in MASKED:
        assert redact_text(expected) == expected, text


def test_redact_walks_json_like_values_and_masks_secret_keys() -> None:
    value = {
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "abc", "Accept": "json"},
        "db_password": "pw",
        "to": ["ann@example.com", 3, 2.5, None, True],
        "tuple": ("10.1.2.3",),
        "idempotency_key": "k-1",
        "input_tokens": 12,
        "empty_token": "",
    }
    assert redact(value) == {
        "headers": {"Authorization": "[secret]", "X-Api-Key": "[secret]", "Accept": "json"},
        "db_password": "[secret]",
        "to": ["[email]", 3, 2.5, None, True],
        "tuple": ["[ip]"],
        "idempotency_key": "k-1",
        "input_tokens": 12,
        "empty_token": "",
    }
    assert value["to"][0] == "ann@example.com"  # the input is not modified


def test_markers_are_the_documented_ones() -> None:
    # The first eight are keyed on elsewhere (raw-value release): they never change.
    assert set(MARKERS.values()) - {"[private_key]", "[ssn]", "[passport]", "[vat]"} == {
        "[email]",
        "[phone]",
        "[card]",
        "[iban]",
        "[ip]",
        "[api_key]",
        "[token]",
        "[secret]",
    }


def test_fast_enough_for_every_event() -> None:
    event = {
        "type": "llm_call_completed",
        "event_id": "0190f3e4-7b2c-7def-8abc-0123456789ab",
        "task_id": "0190f3e4-7b2c-7def-8abc-0123456789ac",
        "occurred_at": "2024-05-01T10:00:00.123456Z",
        "model": "gpt-4o-mini",
        "content": "Revenue grew 12% in Q3 2024, see the notes of the last review. " * 8,
        "usage": {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 0},
        "tool_calls": [{"call_id": "c1", "tool": "search", "arguments": {"q": "kafka"}}],
    }
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        redact(event)
    per_event = (time.perf_counter() - started) / n
    # Generous bound for slow CI machines; typically ~40 us.
    assert per_event < 0.002
