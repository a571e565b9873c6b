"""What the CLI accepts from a person: goals, numbers and times, checked before anything runs.

Every refusal is a ``UsageError`` with one line saying what was wrong and what to do.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from agentledger.errors import UsageError

GOAL_LIMIT_SETTING = "AGENTLEDGER_MAX_GOAL_CHARS"


def read_goal(goal: str | None, goal_file: str | None, max_chars: int) -> str:
    """The goal from ``--goal`` or ``--goal-file`` (``-`` is stdin), checked: valid UTF-8,
    not empty, at most ``max_chars`` characters."""
    if goal_file is not None:
        where = "stdin" if goal_file == "-" else goal_file
        try:
            raw = sys.stdin.buffer.read() if goal_file == "-" else Path(goal_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the goal file {where}: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"the goal in {where} is not valid UTF-8 (byte {exc.start}); save it as UTF-8"
            ) from None
    else:
        text = goal or ""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # argv bytes that were not UTF-8 (surrogateescape)
            raise UsageError(
                f"the goal is not valid UTF-8 (character {exc.start}); "
                "pass it as UTF-8 or with --goal-file"
            ) from None
        where = "--goal"
    text = text.removesuffix("\n") if goal_file is not None else text
    if not text.strip():
        raise UsageError(f"the goal ({where}) is empty")
    if len(text) > max_chars:
        raise UsageError(
            f"the goal ({where}) is {len(text):,} characters, over the {max_chars:,}-character "
            f"limit ({GOAL_LIMIT_SETTING}); shorten it or raise the setting"
        )
    return text


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded_int(text, 1)


def _bounded_int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum of {low}")
    return value


def utc_time(text: str, option: str = "") -> datetime:
    """An ISO date or date-time (``2026-11-30``, ``2026-11-30T04:00Z``) in UTC; a time without
    a zone is UTC. ``option`` names the flag in the refusal."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not an ISO date or time (e.g. 2026-11-30 or 2026-11-30T04:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_time_type(text: str) -> datetime:
    """argparse type: ``utc_time`` (argparse names the option)."""
    try:
        return utc_time(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None
