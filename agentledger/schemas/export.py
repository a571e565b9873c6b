"""JSON Schema export, so producers in other languages can publish events (e.g. goals)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentledger.schemas.catalog import EVENT_ADAPTER, EVENT_TYPES


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every event type, by type tag."""
    return {tag: cls.model_json_schema() for tag, cls in sorted(EVENT_TYPES.items())}


def export_schemas(directory: Path) -> list[Path]:
    """Write ``<type>.schema.json`` for each event and ``event.schema.json`` for the union."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for tag, schema in event_schemas().items():
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        path = directory / f"{tag}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    union = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "AgentLedgerEvent",
        **EVENT_ADAPTER.json_schema(),
    }
    path = directory / "event.schema.json"
    path.write_text(json.dumps(union, indent=2, sort_keys=True) + "\n")
    written.append(path)
    return written
