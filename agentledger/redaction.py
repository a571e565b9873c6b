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
import ipaddress
import re
from collections.abc import Callable
from typing import Any

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
}
"""The replacement marker for each kind of finding."""

Mark = Callable[[str, str], str]
"""``mark(kind, raw_value) -> replacement``; ``kind`` is a key of ``MARKERS``."""

PLACEHOLDER = re.compile(r"\[(email|phone|card|iban|ip|api_key|token|secret)(?::([0-9a-f]{12}))?\]")
"""A marker (``[email]``) or a placeholder (``[email:3f2a9c1e0b7d]``)."""


def _marker(kind: str, raw: str) -> str:
    return MARKERS[kind]


# Secrets first: a key can contain digit runs that would otherwise be read as a phone or card.
_BEARER = re.compile(r"\b(Bearer)\s+([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_API_KEY = re.compile(
    r"\b(?:"
    r"sk-[A-Za-z0-9_-]{16,}"  # OpenAI / Anthropic style: sk-..., sk-proj-..., sk-ant-...
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r")"
)
_SECRET_NAMES = (
    r"api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?key|private[_-]?key"
    r"|access[_-]?token|refresh[_-]?token|auth[_-]?token|token|password|passwd|pwd"
)
# `name=value`, `name: value`, `"name": "value"`; the name is kept so the text still reads.
_KEY_VALUE = re.compile(
    rf"""(?ix)
    (?P<name>(?<!\[)\b(?:{_SECRET_NAMES})\b["']?\s*[=:]\s*["']?)
    (?P<value>(?!\[)[^\s"'&,;<>]{{3,}})
    """
)
_SECRET_HINT = re.compile(r"key|secret|token|passw|pwd")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Country code, two check digits, then 11-30 alphanumerics, optionally grouped by spaces.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w.])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567
    r")(?![\w])"
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
# Candidates only; ipaddress decides, so times like 12:30:45 are left alone.
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)

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


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def _card(mark: Mark, match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return mark("card", match.group())
    return match.group()


def _iban(mark: Mark, match: re.Match[str]) -> str:
    text = match.group()
    # The pattern can run on into a following upper-case word ("... 00 OK"), so try the
    # longest prefix that ends at a character boundary and passes the check.
    positions = [i for i, ch in enumerate(text) if ch != " "]
    for n in range(len(positions), 14, -1):
        end = positions[n - 1] + 1
        if end < len(text) and text[end] != " ":
            continue
        if _iban_ok(text[:end].replace(" ", "")):
            return mark("iban", text[:end]) + text[end:]
    return text


def _phone(mark: Mark, match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group())
    return mark("phone", match.group()) if 7 <= digits <= 15 else match.group()


def _ipv6(mark: Mark, match: re.Match[str]) -> str:
    text = match.group()
    if not any(ch.isalnum() for ch in text):
        return text
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return text
    return mark("ip", text)


def _key_value(mark: Mark, match: re.Match[str]) -> str:
    return match.group("name") + mark("secret", match.group("value"))


def _bearer(mark: Mark, match: re.Match[str]) -> str:
    token = match.group(2)
    # Prose says "bearer" too ("the bearer instrument"): a credential is long and has digits.
    if len(token) < 16 or not any(ch.isdigit() for ch in token):
        return match.group()
    return f"{match.group(1)} {mark('token', token)}"


def _simple(kind: str, mark: Mark, match: re.Match[str]) -> str:
    return mark(kind, match.group())


_DIGIT = re.compile(r"\d")
_API_KEY_HINT = re.compile(r"sk-|AKIA|ASIA|gh[pousr]_|github_pat_|xox|AIza")
# Strings events are full of that can hold nothing to mask: ids and timestamps.
_PLAIN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?"
)


def redact_text(text: str, mark: Mark = _marker) -> str:
    """``text`` with every finding replaced by ``mark(kind, value)`` (default: ``MARKERS``)."""
    # Nothing we mask is this short, or an id or a timestamp; most strings stop here.
    if len(text) < 6 or _PLAIN.fullmatch(text):
        return text
    sub = functools.partial
    # Cheap substring tests decide which patterns can match at all; most strings in an
    # event (ids, type names, model names) skip every regex.
    lower = text.lower()
    if "bearer" in lower:
        text = _BEARER.sub(sub(_bearer, mark), text)
    if "eyJ" in text:
        text = _JWT.sub(sub(_simple, "token", mark), text)
    if _API_KEY_HINT.search(text):
        text = _API_KEY.sub(sub(_simple, "api_key", mark), text)
    if ("=" in text or ":" in text) and _SECRET_HINT.search(lower):
        text = _KEY_VALUE.sub(sub(_key_value, mark), text)
    if "@" in text:
        text = _EMAIL.sub(sub(_simple, "email", mark), text)
    if _DIGIT.search(text) is None:
        return text
    text = _IBAN.sub(sub(_iban, mark), text)
    text = _CARD.sub(sub(_card, mark), text)
    text = _PHONE.sub(sub(_phone, mark), text)
    # IPv6 before IPv4, so an IPv4-mapped address is masked whole.
    if "::" in text or text.count(":") >= 5:
        text = _IPV6.sub(sub(_ipv6, mark), text)
    if "." in text:
        text = _IPV4.sub(sub(_simple, "ip", mark), text)
    return text


@functools.lru_cache(maxsize=4096)  # events reuse a few hundred key names
def _sensitive_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


def redact(value: Any, mark: Mark = _marker) -> Any:
    """A copy of a JSON-like ``value`` with personal data and secrets masked.

    Strings are masked with ``redact_text``; a string under a key that names a secret
    (``password``, ``api_key``, ``authorization``, ``*_token`` ...) is replaced entirely.
    Dicts, lists and tuples are walked; other values are returned unchanged.
    """
    if isinstance(value, str):
        return redact_text(value, mark)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(item, str) and isinstance(key, str) and _sensitive_key(key) and item:
                out[key] = item if PLACEHOLDER.fullmatch(item) else mark("secret", item)
            else:
                out[key] = redact(item, mark)
        return out
    if isinstance(value, list | tuple):
        return [redact(item, mark) for item in value]
    return value
