"""Recipients and domains compared the way a mail server or a browser would, not byte by byte.

An allow-list entry (``ops@example.com``, ``@example.com``, ``example.com``) and the value a
tool is asked to use are both brought to one canonical form before they are compared:

* NFKC and case folding (fullwidth ``\\uff45xample.COM`` is ``example.com``);
* the domain IDNA-encoded with UTS #46 mapping (the ``idna`` package), so a name written
  with a Cyrillic ``\\u0435`` (looks like ``e``) becomes its own ``xn--`` A-label and
  can never equal the Latin one.

Equality of canonical forms is the only way to pass. The confusables skeleton (UTS #39,
folded with the Unicode confusables table shipped by ``confusable-homoglyphs``) is used to
*name* a spoof in the refusal: ``x@\\u0435xample.com`` is refused because it is not
``example.com``, and the reason says that it only looks like it.

    >>> canonical_domain("Bücher.DE")
    'xn--bcher-kva.de'
    >>> skeleton("\\u0435xample.com") == skeleton("example.com")
    True
"""

from __future__ import annotations

import functools
import ipaddress
import unicodedata

import idna
from confusable_homoglyphs.confusables import (  # type: ignore[import-untyped]
    confusables_data,
)

__all__ = ["canonical_address", "canonical_domain", "lookalike_of", "skeleton"]


@functools.lru_cache(maxsize=4096)
def canonical_domain(host: str) -> str | None:
    """``host`` as a lower-case A-label domain, or None when it is not a valid domain name.

    An IP address literal is returned as it is (lower case)."""
    text = unicodedata.normalize("NFKC", host).strip().rstrip(".").casefold()
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))  # a literal: nothing to encode
    except ValueError:
        pass
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    except UnicodeError:
        return None


def canonical_address(address: str) -> str | None:
    """``local@domain`` with the local part NFKC-folded and the domain canonical; None when
    the domain is not valid."""
    local, at, domain = unicodedata.normalize("NFKC", address).strip().rpartition("@")
    if not at:
        return None
    canonical = canonical_domain(domain)
    return None if canonical is None else f"{local.casefold()}@{canonical}"


def _prototype(ch: str) -> str:
    if ch.isascii():
        return ch
    for glyph in confusables_data.get(ch, ()):
        target = glyph["c"]
        if target.isascii():
            return str(target)
    return ch


@functools.lru_cache(maxsize=4096)
def skeleton(text: str) -> str:
    """What ``text`` looks like: NFKC, every character folded to an ASCII look-alike where
    the confusables table has one, case folded. Equal skeletons: a reader cannot tell them
    apart."""
    normal = unicodedata.normalize("NFKC", text)
    return "".join(_prototype(ch) for ch in normal).casefold()


def lookalike_of(value: str, allowed: tuple[str, ...]) -> str | None:
    """The allow-list entry a refused ``value`` imitates (same skeleton), if any."""
    shape = skeleton(value)
    for entry in allowed:
        bare = skeleton(entry.lstrip("@"))
        if shape == bare or shape.endswith(("@" + bare, "." + bare)):
            return entry
    return None
