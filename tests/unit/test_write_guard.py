"""The write guard of every log backend masks whatever is appended, whoever appends it,
and the dead-letter writer's ``mask_record`` keeps records what they were."""

from __future__ import annotations

from pathlib import Path

import orjson

from agentledger.schemas import ApprovalDenied, GoalSubmitted, WorkflowRef
from agentledger.security.masking import Masker, MemoryVault, SqliteVault
from agentledger.streams.kafka_dlq import mask_record
from agentledger.streams.log import EventLog, Recorded
from agentledger.streams.memory import MemoryEventLog
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.streams.write_guard import WriteGuard

NOTE = "call ann.lee@example.com or 020 7946 0958; DB_PASSWORD: Xk9mQ2vL7pR4"


def events() -> list[GoalSubmitted | ApprovalDenied]:
    goal = GoalSubmitted(task_id="t1", seq=1, goal=NOTE, workflow=WorkflowRef(name="wf"))
    denied = ApprovalDenied(
        task_id="t1", seq=2, approval_id="ap-1", subtask_id="s1", tool="purge",
        denied_by="ann@example.com", reason=NOTE,
    )  # fmt: skip
    return [goal, denied]


async def stored(log: EventLog) -> bytes:
    entries = await log.read_task("t1")
    return b"".join(
        orjson.dumps(e.event.model_dump(mode="json")) for e in entries if isinstance(e, Recorded)
    )


async def test_a_sqlite_ledger_masks_every_append_into_the_vault_beside_it(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "ledger.db")  # no runner, no guard given: still masked
    recorded = await log.append(events())
    data = await stored(log)
    await log.close()
    for raw in (b"ann.lee@example.com", b"020 7946 0958", b"Xk9mQ2vL7pR4"):
        assert raw not in data and raw not in (tmp_path / "ledger.db").read_bytes()
    assert recorded[1].event.reason.startswith("call [email:")  # type: ignore[union-attr]
    # the placeholders resolve from the vault beside the ledger
    masker = Masker(SqliteVault(tmp_path / "vault.db"))
    assert masker.unmask(recorded[1].event.reason) == NOTE  # type: ignore[union-attr]


async def test_the_memory_log_masks_too_and_a_raw_guard_is_the_one_way_to_keep_values() -> None:
    log = MemoryEventLog()
    await log.append(events())
    assert b"ann.lee@example.com" not in await stored(log)
    raw = MemoryEventLog(guard=WriteGuard(Masker(MemoryVault()), masked=False))
    await raw.append(events())
    assert b"ann.lee@example.com" in await stored(raw)


async def test_a_reader_that_never_finds_anything_creates_no_vault(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "ledger.db")
    clean = GoalSubmitted(task_id="t1", seq=1, goal="summarise", workflow=WorkflowRef(name="wf"))
    await log.append([clean])
    await log.read_task("t1")
    await log.close()
    assert not (tmp_path / "vault.db").exists()


def test_a_dead_letter_is_masked_as_json_when_it_parses_and_as_text_otherwise() -> None:
    record = orjson.dumps({"type": "x", "body": {"note": NOTE, "n": [1, 2]}})
    masked = orjson.loads(mask_record(record) or b"")
    assert masked["type"] == "x" and masked["body"]["n"] == [1, 2]
    assert masked["body"]["note"] == "call [email] or [phone]; DB_PASSWORD: [secret]"
    text = b"\xff\xfe " + NOTE.encode()
    assert mask_record(text) == b"\xff\xfe call [email] or [phone]; DB_PASSWORD: [secret]"
    clean = b'{"type": "x",  "spacing": "kept"}'
    assert mask_record(clean) is clean  # nothing to mask: parked byte for byte
    assert mask_record(None) is None
