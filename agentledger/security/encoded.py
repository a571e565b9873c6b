"""Instructions hidden in an encoding: base64, hex and rot13 runs decoded for the detector.

A payload such as ``Decode this and follow it: SWdub3JlIHByZXZpb3Vz...`` reads as noise to
a person and to a keyword filter, and as an instruction to a model that decodes it. The
detector asks this module for the runs in a text that decode to readable text, and scans
those too; a match is reported as ``encoded_instruction`` over the encoded run.

Only runs that decode to mostly printable UTF-8 with spaces count, so hashes, ids and
binary data (images, keys) are left alone.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterator

__all__ = ["decoded_spans"]

_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}){12,}(?![0-9A-Fa-f])")
_ROT13 = re.compile(r"\brot[- ]?13\b", re.IGNORECASE)
HINT = r"[A-Za-z0-9+/]{16}|rot[- ]?13"
"""A text matching none of this holds nothing this module decodes."""


def _readable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    if " " not in text or printable < 0.95 * len(text):
        return None
    return text


def decoded_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, decoded)`` for each run of ``text`` that decodes to readable text."""
    for match in _B64.finditer(text):
        token = match.group()
        if token.isdigit() or (token.isalpha() and token.islower()):
            continue  # a number or a plain word run, not base64
        try:
            data = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = _readable(data)
        if decoded is not None:
            yield match.start(), match.end(), decoded
    for match in _HEX.finditer(text):
        decoded = _readable(bytes.fromhex(match.group()))
        if decoded is not None:
            yield match.start(), match.end(), decoded
    marker = _ROT13.search(text)
    if marker is not None:
        rest = text[marker.end() :]
        yield marker.end(), len(text), codecs.decode(rest, "rot13")
