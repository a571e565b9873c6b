"""Forgetting in the audit copy: a ``memory_erased`` event masks the erased memories' text
in every audit row that holds it (the write itself, the ``memory_write`` request, search
results that returned it).

The table keeps the newest write of an event (ReplacingMergeTree on ``ingested_at``), so a
row is masked by writing it again with the text replaced; the view shows only the masked
copy. Applied by the audit projection as it meets each erasure, so a rebuild from the log
masks again what it re-inserts.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from agentledger.audit.rows import AUDIT_COLUMNS
from agentledger.audit.store import AuditStore
from agentledger.schemas import EventBase
from agentledger.schemas.memory import MemoryErased

ERASED = "[erased]"


def apply_erasures(store: AuditStore, events: Sequence[EventBase]) -> int:
    """Mask, in ``store``, the memories each erasure in ``events`` forgets. Returns the
    number of rows rewritten."""
    return sum(erase_memory(store, e) for e in events if isinstance(e, MemoryErased))


def erase_memory(store: AuditStore, erasure: MemoryErased) -> int:
    db = store.database
    condition = "JSONExtractString(payload, 'namespace') = {ns:String}"
    params: dict[str, str] = {"ns": erasure.namespace}
    if erasure.key is not None:
        condition += " AND JSONExtractString(payload, 'key') = {key:String}"
        params["key"] = erasure.key
    texts = store.query(
        f"SELECT DISTINCT JSONExtractString(payload, 'text') FROM {db}.audit_events "
        f"WHERE type = 'memory_written' AND {condition}",
        params,
    ).rows
    # As the text appears inside any row's JSON payload (escaped like a JSON string).
    needles = sorted(
        {orjson.dumps(str(t[0])).decode()[1:-1] for t in texts if t[0] and t[0] != ERASED},
        key=len,
        reverse=True,
    )
    if not needles:
        return 0
    columns = ", ".join(AUDIT_COLUMNS)
    rows = store.query(
        f"SELECT {columns} FROM {db}.audit_events "
        "WHERE multiSearchAny(payload, {needles:Array(String)})",
        {"needles": needles},
    ).rows
    payload_at = AUDIT_COLUMNS.index("payload")
    rewritten = []
    for row in rows:
        payload = str(row[payload_at])
        for needle in needles:
            payload = payload.replace(needle, ERASED)
        rewritten.append((*row[:payload_at], payload, *row[payload_at + 1 :]))
    return store.insert_values(rewritten)
