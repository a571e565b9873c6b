"""Each kind of corrupt row, written with sqlite3 into a real ledger: readers report it with
its offset and go on; an unfinished task holding one is quarantined (nothing runs twice);
`doctor` finds every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import DELIVERIES as FIXTURE
from tests.support.cli import cli
from tests.support.cli import sql as _sql


def _executions(home: Path) -> list[str]:
    return (home / "sandbox" / "deliveries.log").read_text().splitlines()


@pytest.fixture
def unfinished(home: Path) -> tuple[str, int, int]:
    """A task cut off right after its first side effect's start marker, as a crash leaves
    it: (task id, the marker's seq, its offset). The delivery did happen (one execution)."""
    code, out, err = cli("run", str(FIXTURE), "--goal", "deliver three parcels", "-q")
    assert code == 0, err
    task_id = out.strip().splitlines()[-1].split()[1]
    ((seq, offset),) = _sql(
        home,
        "SELECT seq, offset FROM events WHERE task_id = ? AND type = 'tool_call_started' "
        "ORDER BY seq LIMIT 1",
        task_id,
    )
    assert isinstance(seq, int) and isinstance(offset, int)
    _sql(home, "DELETE FROM events WHERE task_id = ? AND seq > ?", task_id, seq)
    key = _sql(home, "SELECT data FROM events WHERE offset = ?", offset)[0][0]
    assert isinstance(key, bytes)
    # keep only the executions the kept log accounts for: the ones started by seq
    kept = [line for line in _executions(home) if line.split()[0].encode() in key]
    (home / "sandbox" / "deliveries.log").write_text("".join(f"{k}\n" for k in kept))
    assert len(kept) == 1
    return task_id, seq, offset


def test_a_corrupt_side_effect_start_marker_quarantines_the_task_and_runs_nothing_twice(
    home: Path, unfinished: tuple[str, int, int]
):
    task_id, seq, offset = unfinished
    _sql(home, "UPDATE events SET data = ? WHERE offset = ?", b'{"type": "tool_call_st', offset)
    code, _out, err = cli("resume", task_id)
    assert code == 4
    assert f"task {task_id} is quarantined: its record at offset {offset} (seq {seq}) " in err
    assert "cannot be decoded: not JSON" in err
    assert "another process" not in err
    assert len(_executions(home)) == 1  # the delivery was not executed a second time
    assert _sql(home, "SELECT MAX(seq) FROM events WHERE task_id = ?", task_id) == [(seq,)]
    code, report, _ = cli("doctor")
    assert code == 4
    assert f"offset {offset} (task {task_id}, seq {seq}): not JSON" in report
    assert f"quarantined: task {task_id}" in report


def test_a_corrupt_plan_leaves_the_task_quarantined_not_failed(
    home: Path, unfinished: tuple[str, int, int]
):
    task_id, _, _ = unfinished
    ((offset, seq),) = _sql(
        home, "SELECT offset, seq FROM events WHERE type = 'task_planned' AND task_id = ?", task_id
    )
    _sql(home, "UPDATE events SET data = ? WHERE offset = ?", b'{"type": "task_planned"}', offset)
    code, _, err = cli("resume", task_id)
    assert code == 4 and f"offset {offset} (seq {seq})" in err and "invalid task_planned" in err
    code, out, err = cli("status", task_id)
    assert code == 0 and "failed" not in out
    assert f"!! offset {offset} (seq {seq}): invalid task_planned event" in err


def test_data_stored_as_text_is_reported_by_every_reader(
    home: Path, unfinished: tuple[str, int, int]
):
    task_id, seq, offset = unfinished
    _sql(home, "UPDATE events SET data = CAST(data AS TEXT) WHERE offset = ?", offset)
    for command in ("events", "status", "replay"):
        code, _, err = cli(command, task_id)
        assert code == 0, (command, err)
        assert f"!! offset {offset} (seq {seq}): data stored as TEXT, not BLOB" in err
    code, out, _ = cli("events", task_id, "--json")
    assert code == 0 and f'"offset":{offset},' in out and '"corrupt":"data stored as TEXT' in out
    code, _, err = cli("resume", task_id)
    assert code == 4 and "quarantined" in err and "data stored as TEXT" in err
    assert "TypeError" not in err


def test_an_unreadable_timestamp_does_not_stop_tasks(home: Path, unfinished: tuple[str, int, int]):
    task_id, _, offset = unfinished
    _sql(home, "UPDATE events SET occurred_at = 'yesterday-ish' WHERE offset = ?", offset)
    code, out, _ = cli("tasks")
    assert code == 0 and f"{task_id}" in out and "(unreadable time)" in out
    code, report, _ = cli("doctor")
    assert code == 4 and f"offset {offset}: occurred_at column 'yesterday-ish' unreadable" in report


def test_an_event_that_disagrees_with_its_row_is_corrupt(
    home: Path, unfinished: tuple[str, int, int]
):
    task_id, seq, offset = unfinished
    _sql(home, "UPDATE events SET seq = ? WHERE offset = ?", seq + 5, offset)
    code, _, err = cli("resume", task_id)
    assert code == 4
    assert f"the row says task {task_id} seq {seq + 5}, the event inside says" in err
    code, report, _ = cli("doctor")
    assert code == 4
    assert f"task {task_id}: seq not contiguous (missing {seq}, {seq + 1}, " in report


def test_an_undecodable_last_row_is_named_and_resume_does_not_blame_another_process(
    home: Path, unfinished: tuple[str, int, int]
):
    task_id, seq, _ = unfinished
    offset = _sql(
        home,
        "INSERT INTO events (event_id, task_id, seq, type, occurred_at, data) "
        "VALUES ('x1', ?, ?, 'mystery', '2026-01-01T00:00:00+00:00', ?) RETURNING offset",
        task_id,
        seq + 1,
        b'{"type": "mystery"}',
    )[0][0]
    code, _, err = cli("resume", task_id)
    assert code == 4
    assert f"offset {offset} (seq {seq + 1}) cannot be decoded: unknown event type 'mystery'" in err
    assert "another process" not in err


def test_a_finished_task_with_a_corrupt_row_is_read_and_not_quarantined(home: Path):
    code, out, _ = cli("run", str(FIXTURE), "--goal", "deliver", "-q")
    task_id = out.strip().splitlines()[-1].split()[1]
    _sql(home, "UPDATE events SET data = 'garbage' WHERE task_id = ? AND seq = 3", task_id)
    code, out, _ = cli("resume", task_id)
    assert code == 0 and "already completed" in out
    code, report, _ = cli("doctor")
    assert code == 4 and "data stored as TEXT" in report and "quarantined" not in report


def test_a_file_that_is_not_sqlite_is_an_unusable_ledger(home: Path):
    (home / "ledger.db").write_bytes(b"this is not a database" * 100)
    for argv in (("status", "t"), ("tasks",), ("events", "t"), ("doctor",)):
        code, out, err = cli(*argv)
        assert code == 4, argv
        assert "file is not a database" in (out + err) and "Traceback" not in err
