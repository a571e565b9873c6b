"""Upcasting: stored events written under an older schema version are brought up to date
on read, so old logs stay readable after an event's shape changes.

To change an event's shape: bump its class's ``SCHEMA_VERSION`` and register a function
that turns the previous version's dict into the new one::

    @upcaster("llm_call_completed", from_version=1)
    def _usage_object(data):
        data["usage"] = {"input_tokens": data.pop("tokens_in"), ...}
        return data

Keep a saved sample of the old version under ``tests/contract/samples/`` so a test reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` to turn ``event_type`` at ``from_version`` into ``from_version + 1``."""

    def register(fn: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _UPCASTERS[key] = fn
        return fn

    return register


def unregister(event_type: str, *, from_version: int) -> None:
    _UPCASTERS.pop((event_type, from_version), None)


def upcast(data: dict[str, Any], current_version: int) -> dict[str, Any]:
    """Apply registered upcasters until ``data`` is at ``current_version``."""
    version = int(data.get("schema_version", 1))
    event_type = str(data.get("type"))
    while version < current_version:
        fn = _UPCASTERS.get((event_type, version))
        if fn is None:
            raise ValueError(
                f"{event_type} is stored at schema v{version} but the code reads "
                f"v{current_version}, and no upcaster from v{version} is registered"
            )
        data = fn(data)
        version += 1
        data["schema_version"] = version
    if version > current_version:
        raise ValueError(
            f"{event_type} is stored at schema v{version}, newer than this code (v{current_version}); "
            "upgrade agentledger to read it"
        )
    return data
