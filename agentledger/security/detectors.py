"""Detectors of personal data and secrets in text, behind one interface.

A detector looks at one string and returns ``Finding`` values: where (a span), what (a
category of ``agentledger.redaction.MARKERS``) and how sure (a confidence in 0..1). The
work is done by maintained libraries wherever one exists:

=====================  =================================================================
phone numbers          ``phonenumbers`` (libphonenumber): national formats by region
IBAN, VAT, US SSN,     ``python-stdnum``: the check digits and national formats decide
cards (Luhn)
AWS, Stripe, Slack,    the rules of ``detect-secrets`` (its plugins' ``denylist``
GitHub, JWT, PEM,      patterns), plus its Shannon entropy for bare secret keys
passwords in URLs
=====================  =================================================================

Written here, because no library finds them in free text: e-mail addresses (Unicode
local parts and domains; ``email-validator`` only checks a whole string), IP addresses
(the standard ``ipaddress`` decides), ``Bearer`` tokens and ``name = value`` secrets (the
names come from detect-secrets' keyword list; its own keyword rules are line-oriented and
would swallow the rest of a line of prose), the span of a PEM block (detect-secrets
reports the line with ``BEGIN``, not the block), OpenAI-style ``sk-`` keys of any vendor,
and passport numbers (no check digits to test: only the word "passport" next to the
number tells).

Each detector is gated by a cheap test (a substring, a digit count), so most strings of an
event skip every expensive call.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import phonenumbers
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import DENYLIST as SECRET_KEYWORDS
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.eu import vat as std_vat
from stdnum.us import ssn as std_ssn

__all__ = ["DEFAULT_DETECTORS", "PHONE_REGIONS", "Detector", "Finding", "find"]


@dataclass(frozen=True, slots=True)
class Finding:
    """``text[start:end]`` is a value of ``category``, with ``confidence`` in 0..1."""

    start: int
    end: int
    category: str
    confidence: float


class Detector(Protocol):
    """Finds values of its categories in one string."""

    name: str
    needs_digits: bool  # every value it finds has a digit: skipped for text without one

    def detect(self, text: str) -> Iterator[Finding]: ...


def _spans(
    pattern: re.Pattern[str], text: str, category: str, confidence: float, group: int | str = 0
) -> Iterator[Finding]:
    for m in pattern.finditer(text):
        if m.end(group) > m.start(group):
            yield Finding(m.start(group), m.end(group), category, confidence)


# -- secrets ---------------------------------------------------------------------------------


def _rules(detector: object) -> tuple[re.Pattern[str], ...]:
    return tuple(getattr(detector, "denylist", ()))


_AWS_ID, _AWS_SECRET_IN_CODE = _rules(AWSKeyDetector)
_STRIPE = _rules(StripeDetector)
_SLACK = _rules(SlackDetector)
_GITHUB = _rules(GitHubTokenDetector)
# detect-secrets' JWT rule ends lazily (it only needs to know a line holds one): the same
# pattern, greedy, gives the whole token's span.
_JWT = tuple(re.compile(p.pattern.replace("*?", "*")) for p in _rules(JwtTokenDetector))
_BASIC_AUTH = _rules(BasicAuthDetector)
_PEM_BEGIN = _rules(PrivateKeyDetector)
# The block a BEGIN line opens: up to its END line, or to the end of the base64 run when
# the text was cut off.
_PEM_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|[A-Za-z0-9+/=\s:,-]*)",
    re.DOTALL,
)
# Keys of vendors detect-secrets has no rule for (Anthropic, OpenAI project keys, Google).
_VENDOR_KEY = re.compile(
    r"(?<![A-Za-z0-9_-])(?:sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{35}|github_pat_[A-Za-z0-9_]{22,})"
)
_BEARER = re.compile(r"(?i)\bbearer(?:\s+|\s*[=:]\s*)([A-Za-z0-9\-._~+/]+=*)")
_KEY_NAMES = "|".join(
    [*SECRET_KEYWORDS, "token", "bearer", "access_?key", "secret_?key", "credential", "auth"]
)
# `name=value`, `name: value`, `"name": "value"`, `NAME := value`; the name is kept so the
# text still reads. A name may carry affixes (DB_PASSWORD, aws_secret_access_key).
_KEY_VALUE = re.compile(
    rf"""(?ix)
    (?<![A-Za-z0-9_\[-])[\w-]*?(?:{_KEY_NAMES})[\w-]*
    ["'\]]{{0,2}}\s*(?::=|=|:)\s*["']?
    (?P<value>(?!\[|(?:bearer|basic)\b)[^\s"'&,;<>)\]}}]{{4,}})
    """
)
_SECRET_HINT = re.compile(r"(?i)key|secret|token|passw|pwd|bearer|auth|credential|contrase")
# A run of 40 or more base64 characters: the shape of an AWS secret access key (40) and
# of many other keys; the entropy decides.
_BARE_KEY = re.compile(r"(?<![A-Za-z0-9+=])[A-Za-z0-9/+]{40,}={0,2}(?![A-Za-z0-9/+=])")
# A word or path segment glued on with a slash ("see/<key>"), kept when the rest is a key.
_LEADING_WORD = re.compile(r"[a-z]{1,12}/")
_ENTROPY = Base64HighEntropyString(limit=4.5)


class SecretDetector:
    """API keys, tokens, private keys and passwords (detect-secrets' rules)."""

    name = "secrets"
    needs_digits = False

    def detect(self, text: str) -> Iterator[Finding]:
        if "PRIVATE KEY" in text and any(p.search(text) for p in _PEM_BEGIN):
            yield from _spans(_PEM_BLOCK, text, "private_key", 0.99)
        if "_live_" in text:
            for p in _STRIPE:
                yield from _spans(p, text, "api_key", 0.99)
        if "xox" in text or "hooks.slack.com" in text:
            for p in _SLACK:
                yield from _spans(p, text, "api_key", 0.95)
        if "gh" in text:
            for p in _GITHUB:
                yield from _spans(p, text, "api_key", 0.99)
        if "A" in text:
            yield from _spans(_AWS_ID, text, "api_key", 0.99)
        if "sk-" in text or "AIza" in text or "github_pat_" in text:
            yield from _spans(_VENDOR_KEY, text, "api_key", 0.9)
        if "eyJ" in text:
            for p in _JWT:
                yield from _spans(p, text, "token", 0.95)
        if "://" in text and "@" in text:
            for p in _BASIC_AUTH:
                yield from _spans(p, text, "secret", 0.95, group=1)
        if _SECRET_HINT.search(text):
            for m in _BEARER.finditer(text):
                token = m.group(1)
                # Prose says "bearer" too: a credential is long and has digits.
                if len(token) >= 16 and any(ch.isdigit() for ch in token):
                    yield Finding(m.start(1), m.end(1), "token", 0.9)
            if "=" in text or ":" in text:
                yield from _spans(_KEY_VALUE, text, "secret", 0.8, group="value")
        if len(text) >= 40:
            for m in _BARE_KEY.finditer(text):
                start, value = m.start(), m.group()
                while (lead := _LEADING_WORD.match(value)) and len(value) - lead.end() >= 40:
                    start, value = start + lead.end(), value[lead.end() :]
                if _random_looking(value):
                    yield Finding(start, m.end(), "secret", 0.7)


def _random_looking(value: str) -> bool:
    """Upper and lower case letters and digits, spread like random bytes (not a path)."""
    return (
        any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
        and _ENTROPY.calculate_shannon_entropy(value) >= 4.5
    )


# -- identifiers with check digits ------------------------------------------------------------

# Country code, two check digits, then 11-30 alphanumerics, optionally grouped by spaces.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![A-Za-z0-9_.])\d(?:[ -]?\d){12,18}(?![A-Za-z0-9_.])")
_SSN = re.compile(r"(?<![A-Za-z0-9_.-])\d{3}([- ])\d{2}\1\d{4}(?![A-Za-z0-9_.-])")
_SSN_BARE = re.compile(r"(?i)(?<![A-Za-z0-9])ssn\b\W{0,3}(\d{9})(?![A-Za-z0-9])")
_VAT = re.compile(
    r"(?<![A-Za-z0-9])(?:AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|GB|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK)"
    r"[ ]?[0-9A-Z]{8,12}(?![A-Za-z0-9])"
)
_PASSPORT = re.compile(
    r"(?i)(?:passport|reisepass|passeport|pasaporte)\b[^\n\w]{0,3}"
    r"(?:(?:no|nr|num|number|n°|#)\b\.?[^\n\w]{0,3})?"
    r"(?-i:([A-Z0-9]{6,9}))(?![A-Za-z0-9])"
)


class IdentifierDetector:
    """IBANs, VAT numbers, US SSNs, cards and passports (python-stdnum checks the digits)."""

    name = "identifiers"
    needs_digits = True

    def detect(self, text: str) -> Iterator[Finding]:
        for m in _IBAN.finditer(text):
            found = _iban_prefix(m.group())
            if found:
                yield Finding(m.start(), m.start() + found, "iban", 0.99)
        for m in _VAT.finditer(text):
            if std_vat.is_valid(m.group()):
                yield Finding(m.start(), m.end(), "vat", 0.95)
        for m in _CARD.finditer(text):
            digits = m.group().replace(" ", "").replace("-", "")
            if 13 <= len(digits) <= 19 and std_luhn.is_valid(digits):
                yield Finding(m.start(), m.end(), "card", 0.95)
        if "-" in text or " " in text:
            for m in _SSN.finditer(text):
                if std_ssn.is_valid(m.group().replace(" ", "-")):
                    yield Finding(m.start(), m.end(), "ssn", 0.9)
        lower = text.lower()
        if "ssn" in lower:
            for m in _SSN_BARE.finditer(text):
                if std_ssn.is_valid(m.group(1)):
                    yield Finding(m.start(1), m.end(1), "ssn", 0.95)
        if "pass" in lower or "reisepass" in lower:
            for m in _PASSPORT.finditer(text):
                if any(c.isdigit() for c in m.group(1)):
                    yield Finding(m.start(1), m.end(1), "passport", 0.8)


def _iban_prefix(text: str) -> int:
    """The length of the longest prefix of ``text`` that is a valid IBAN (0: none).

    The pattern can run on into a following upper-case word ("... 00 OK"), so each prefix
    that ends at a group boundary is tried."""
    positions = [i for i, ch in enumerate(text) if ch != " "]
    for n in range(len(positions), 14, -1):
        end = positions[n - 1] + 1
        if end < len(text) and text[end] != " ":
            continue
        if std_iban.is_valid(text[:end]):
            return end
    return 0


# -- contact data ---------------------------------------------------------------------------

PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR")
"""Regions whose national formats (no ``+``) are recognised; ``+`` numbers in any region."""

# A run that could be a phone number: digits with the usual separators, 7-15 digits.
_PHONE_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_+.:-])(?:\+|00)?\(?\d[\d ().\-/]{5,20}\d(?![A-Za-z0-9_/:-]|\.\d)"
)
# The shapes a phone number has in writing even when libphonenumber calls the number
# unassigned (fictional 555 numbers, ranges not yet allocated): masked all the same.
_PHONE_SHAPE = re.compile(
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
)
# Dates are digit runs with separators too; they are never phone numbers here.
_DATE = re.compile(r"\d{4}([./-])\d\d?\1\d\d?|\d\d?([./-])\d\d?\2\d{2,4}")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![A-Za-z0-9_-])"
)


class ContactDetector:
    """E-mail addresses (any script) and phone numbers (``phonenumbers``, by region)."""

    name = "contact"
    needs_digits = False

    def __init__(self, regions: Sequence[str] = PHONE_REGIONS) -> None:
        self.regions = tuple(regions)

    def detect(self, text: str) -> Iterator[Finding]:
        if "@" in text:
            yield from _spans(_EMAIL, text, "email", 0.95)
        for m in _PHONE_CANDIDATE.finditer(text):
            candidate = m.group()
            digits = sum(ch.isdigit() for ch in candidate)
            if not 7 <= digits <= 15 or _DATE.search(candidate):
                continue
            confidence = _phone(candidate, self.regions)
            if confidence:
                yield Finding(m.start(), m.end(), "phone", confidence)


@functools.lru_cache(maxsize=4096)  # parsing is the dearest step; numbers recur across events
def _phone(candidate: str, regions: tuple[str, ...]) -> float:
    for region in (None,) if candidate.startswith("+") else regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return 0.95
    return 0.6 if _PHONE_SHAPE.fullmatch(candidate) else 0.0


# -- network -------------------------------------------------------------------------------

_IPV4 = re.compile(
    r"(?<![A-Za-z0-9_.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![A-Za-z0-9_]|\.\d)"
)
# Candidates only; ipaddress decides, so times like 12:30:45 are left alone.
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![A-Za-z0-9_:])"
)


class NetworkDetector:
    """IPv4 and IPv6 addresses (the standard ``ipaddress`` module decides)."""

    name = "network"
    needs_digits = True

    def detect(self, text: str) -> Iterator[Finding]:
        if "::" in text or text.count(":") >= 5:
            for m in _IPV6.finditer(text):
                value = m.group()
                if any(ch.isalnum() for ch in value) and _ipv6(value):
                    yield Finding(m.start(), m.end(), "ip", 0.9)
        if "." in text:
            yield from _spans(_IPV4, text, "ip", 0.9)


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


DEFAULT_DETECTORS: tuple[Detector, ...] = (
    SecretDetector(),
    IdentifierDetector(),
    NetworkDetector(),
    ContactDetector(),
)
"""In priority order: where two findings overlap, the earlier detector's wins (a key can
hold digit runs that would otherwise read as a phone or a card)."""

_DIGIT = re.compile(r"\d")


def find(text: str, detectors: Sequence[Detector] = DEFAULT_DETECTORS) -> tuple[Finding, ...]:
    """The findings in ``text`` that do not overlap, in text order.

    Overlaps are settled by detector order, then by length (the longer wins). Results for
    the default detectors are cached: an agent's context repeats the same texts (goal,
    documents, earlier answers) in event after event."""
    if detectors is DEFAULT_DETECTORS and len(text) <= _CACHED_TEXT:
        return _find_default(text)
    return _find(text, detectors)


_CACHED_TEXT = 16_384


@functools.lru_cache(maxsize=2048)
def _find_default(text: str) -> tuple[Finding, ...]:
    return _find(text, DEFAULT_DETECTORS)


def _find(text: str, detectors: Sequence[Detector]) -> tuple[Finding, ...]:
    picked: list[Finding] = []
    has_digit = _DIGIT.search(text) is not None
    for detector in detectors:
        if detector.needs_digits and not has_digit:
            continue
        found = sorted(detector.detect(text), key=lambda f: (f.start, f.start - f.end))
        for f in found:
            if all(f.end <= p.start or f.start >= p.end for p in picked):
                picked.append(f)
    picked.sort(key=lambda f: f.start)
    return tuple(picked)
