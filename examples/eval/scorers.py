"""Python scorers for the expense-totals suite: ``(case, output) -> bool | 0..1 | (score, why)``."""

from __future__ import annotations

from typing import Any

from agentledger.evaluation.suite import Case


def count_matches(case: Case, output: Any) -> tuple[bool, str]:
    """The summary counts as many expenses as the case expects."""
    want = case.expected.get("count") if isinstance(case.expected, dict) else None
    got = output.get("count") if isinstance(output, dict) else None
    return got == want, f"counted {got}, expected {want}"
