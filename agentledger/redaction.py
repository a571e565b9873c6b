"""Masking of personal data and secrets in text and in any JSON-like value.

The audit table and logs keep what agents saw and said; this module makes sure they do not
keep e-mail addresses, phone numbers, card numbers, IBANs, IP addresses, API keys or bearer
tokens while doing so. Each finding is replaced by a marker naming what was there::

    >>> redact_text("mail ann@example.com, key sk-abcdefghijklmnopqrstuvwx")
    'mail [email], key [api_key]'
    >>> redact({"to": "+44 20 7946 0958", "password": "hunter2", "n": 3})
    {'to': '[phone]', 'password': '[secret]', 'n': 3}

Numbers that merely look like cards or IBANs are kept: a card must pass the Luhn check and
an IBAN the mod-97 check, so order ids and timestamps are not masked by accident.

Every pattern is compiled once at import and each is guarded by a cheap substring test, so
masking is fast enough to run on every event.

``mark`` chooses the replacement: the default is the bare marker; the primary log uses
``agentledger.security.masking.Masker``, whose marks are deterministic placeholders such as
``[email:3f2a9c1e0b7d]`` (a keyed hash, so equal values stay equal and nothing can be
guessed back). Text that already is a marker or placeholder is left alone.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from agentledger.security.detectors import Finding, find

__all__ = ["MARKERS", "PLACEHOLDER", "Mark", "redact", "redact_text"]

MARKERS = {
    "email": "[email]",
    "phone": "[phone]",
    "card": "[card]",
    "iban": "[iban]",
    "ip": "[ip]",
    "api_key": "[api_key]",
    "token": "[token]",
    "secret": "[secret]",
    "private_key": "[private_key]",
    "ssn": "[ssn]",
    "passport": "[passport]",
    "vat": "[vat]",
}
"""The replacement marker for each kind of finding."""

Mark = Callable[[str, str], str]
"""``mark(kind, raw_value) -> replacement``; ``kind`` is a key of ``MARKERS``."""

PLACEHOLDER = re.compile(r"\[(" + "|".join(MARKERS) + r")(?::([0-9a-f]{12}))?\]")
"""A marker (``[email]``) or a placeholder (``[email:3f2a9c1e0b7d]``)."""


def _marker(kind: str, raw: str) -> str:
    return MARKERS[kind]


_SENSITIVE_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "secret_key",
        "api_key",
        "apikey",
        "x_api_key",
        "access_key",
        "private_key",
        "token",
        "access_token",
        "refresh_token",
        "auth_token",
        "id_token",
        "authorization",
        "cookie",
        "set_cookie",
    }
)
_SENSITIVE_SUFFIXES = ("_password", "_secret", "_token", "_api_key", "_apikey", "_private_key")


# Strings events are full of that can hold nothing to mask: ids and timestamps.
_PLAIN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?"
)


def redact_text(text: str, mark: Mark = _marker) -> str:
    """``text`` with every finding replaced by ``mark(kind, value)`` (default: ``MARKERS``).

    Detection runs on the NFKC form of the text, so full-width digits and look-alike
    letters do not hide a value; when something is found, the masked text is that form.
    A value right after a backslash escape (``\\n``, ``\\u00e9``) keeps the escape
    whole, so JSON held in text that does not parse stays as valid as it was."""
    # Nothing we mask is this short, or an id or a timestamp; most strings stop here.
    if len(text) < 6 or _PLAIN.fullmatch(text):
        return text
    if not text.isascii():
        normal = unicodedata.normalize("NFKC", text)
        if normal != text:
            masked = _mask_findings(normal, mark)
            return text if masked is None else masked
    masked = _mask_findings(text, mark)
    return text if masked is None else masked


def _mask_findings(text: str, mark: Mark) -> str | None:
    findings: Sequence[Finding] = find(text)
    escapes: list[tuple[int, int]] = []
    if "\\" in text:
        # The text may be JSON source (a log line, an answer cut off mid-way): detect also
        # on a view where each backslash escape is blanked (same length, so spans line up),
        # where a value right after `\\n` starts at a word boundary as it does decoded.
        # A backslash may also be just a backslash, so what the text itself shows counts too.
        escapes = [m.span() for m in _ESCAPE.finditer(text)]
        in_view = find(_ESCAPE.sub(_blank, text))
        findings = sorted(
            [*in_view, *(f for f in findings if not any(_overlap(f, v) for v in in_view))],
            key=lambda f: f.start,
        )
    if not findings:
        return None
    kept = [m.span() for m in PLACEHOLDER.finditer(text)] if "[" in text else []
    out: list[str] = []
    at = 0
    for f in findings:
        start, end = f.start, f.end
        for e_start, e_end in escapes:
            if e_start < start < e_end:
                start = e_end
            if e_start < end < e_end:
                end = e_start
        if end <= start or start < at:
            continue
        if any(start < e and end > s for s, e in kept):
            continue  # a placeholder (or part of one) is already masked
        out.append(text[at:start])
        out.append(mark(f.category, text[start:end]))
        at = end
    if not out:
        return None
    out.append(text[at:])
    return "".join(out)


def _overlap(a: Finding, b: Finding) -> bool:
    return a.start < b.end and b.start < a.end


_ESCAPE = re.compile(r'\\(?:u[0-9a-fA-F]{4}|["\\/bfnrt])')


def _blank(match: re.Match[str]) -> str:
    # `\/` stays a slash (JSON may escape the slashes of a URL); everything else is blank.
    escape = match.group()
    return " /" if escape == "\\/" else " " * len(escape)


@functools.lru_cache(maxsize=4096)  # events reuse a few hundred key names
def _sensitive_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


def redact(value: Any, mark: Mark = _marker) -> Any:
    """A copy of a JSON-like ``value`` with personal data and secrets masked.

    Strings are masked with ``redact_text``; a string that holds a JSON object or array (a
    model's answer, tool arguments) is decoded, walked and encoded again, so the result is
    valid JSON of the same shape. A string under a key that names a secret (``password``,
    ``api_key``, ``authorization``, ``*_token`` ...) is replaced entirely. Keys are masked
    too. Dicts, lists and tuples are walked; other values are returned unchanged.
    """
    if isinstance(value, str):
        return _redact_string(value, mark)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and not (len(key) < 24 and key.isidentifier()):
                key = redact_text(key, mark)
            if isinstance(item, str) and isinstance(key, str) and _sensitive_key(key) and item:
                out[key] = item if PLACEHOLDER.fullmatch(item) else mark("secret", item)
            else:
                out[key] = redact(item, mark)
        return out
    if isinstance(value, list | tuple):
        return [redact(item, mark) for item in value]
    return value


def _redact_string(text: str, mark: Mark) -> str:
    stripped = text.strip()
    if len(stripped) > 6 and stripped[0] in "{[" and stripped[-1] in "}]":
        try:
            decoded = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(decoded, dict | list):
                masked = redact(decoded, mark)
                if masked == decoded:
                    return text
                pretty = "\n" in stripped
                body = orjson.dumps(masked, option=orjson.OPT_INDENT_2 if pretty else 0).decode()
                return text[: len(text) - len(text.lstrip())] + body
    return redact_text(text, mark)
