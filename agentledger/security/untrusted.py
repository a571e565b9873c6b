"""Marking untrusted data in prompts: ``<data>`` tags that the data itself cannot close.

Goal inputs, tool results and other agents' outputs go into a prompt inside ``<data>``
tags, and the system prompt says that nothing inside them is an instruction. A document
that contains ``</data>`` would otherwise end the block early and put its own text where
instructions go, so tag-like text inside the data is neutralised first.
"""

from __future__ import annotations

import re

__all__ = ["data_block", "neutralise"]

_TAG = re.compile(r"<(?=\s*/?\s*data\b)", re.IGNORECASE)


def neutralise(text: str) -> str:
    """``text`` with every ``<data``/``</data`` opening changed to ``&lt;``."""
    return _TAG.sub("&lt;", text) if "<" in text else text


def data_block(text: str, source: str | None = None) -> str:
    """``text`` as one block of untrusted data, optionally naming where it came from."""
    opening = f'<data source="{source}">' if source else "<data>"
    return f"{opening}\n{neutralise(text)}\n</data>"
