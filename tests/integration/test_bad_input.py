"""The bad-input list: every refusal is one clear line and the documented exit code (2 for
bad input, 4 for an unusable ledger), never a traceback; untrusted text never reaches the
terminal as a control sequence; a closed stdout ends quietly."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentledger.cli import main
from tests.support.cli import DELIVERIES as FIXTURE
from tests.support.cli import cli

ESC_GOAL = "deliver \x1b]0;pwned\x07 \x1b[2J\x9b31m parcels \u202e"


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def escaped_task(home: Path) -> str:
    code, out, err = cli("run", str(FIXTURE), "--goal", ESC_GOAL)
    assert code == 0, err
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned\\x07 \\x1b[2J\\x9b31m parcels \\u202e" in out  # shown, defused
    return out.strip().splitlines()[-1].split()[1]


def test_a_goal_over_the_limit_names_the_setting(home: Path, monkeypatch: pytest.MonkeyPatch):
    code, _, err = cli("run", str(FIXTURE), "--goal", "x" * 20_001)
    assert code == 2
    assert one_line_error(err) == (
        "error: the goal (--goal) is 20,001 characters, over the 20,000-character limit "
        "(AGENTLEDGER_MAX_GOAL_CHARS); shorten it or raise the setting"
    )
    monkeypatch.setenv("AGENTLEDGER_MAX_GOAL_CHARS", "30000")
    goal = home / "goal.txt"
    goal.write_text("y" * 25_000)
    code, out, err = cli("run", str(FIXTURE), "--goal-file", str(goal), "-q")
    assert code == 0, err and "completed" in out


def test_goals_that_are_not_utf8_are_refused(home: Path, monkeypatch: pytest.MonkeyPatch):
    bad = home / "bad.txt"
    bad.write_bytes(b"deliver \xff\xfe parcels")
    code, _, err = cli("run", str(FIXTURE), "--goal-file", str(bad))
    assert code == 2
    assert one_line_error(err) == (
        f"error: the goal in {bad} is not valid UTF-8 (byte 8); save it as UTF-8"
    )
    code, _, err = cli("run", str(FIXTURE), "--goal", "deliver \udcff")  # argv surrogateescape
    assert code == 2 and "the goal is not valid UTF-8 (character 8)" in one_line_error(err)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xc3\x28")))
    code, _, err = cli("run", str(FIXTURE), "--goal-file", "-")
    assert code == 2 and "the goal in stdin is not valid UTF-8" in one_line_error(err)
    code, _, err = cli("run", str(FIXTURE), "--goal-file", str(home / "missing.txt"))
    assert code == 2 and "cannot read the goal file" in one_line_error(err)
    assert not (home / "ledger.db").exists()  # refused before anything was written


def test_a_goal_from_stdin_runs(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"deliver the lot\n")))
    code, out, err = cli("run", str(FIXTURE), "--goal-file", "-", "-q")
    assert code == 0, err
    task_id = out.strip().splitlines()[-1].split()[1]
    code, out, _ = cli("status", task_id, "--json")
    assert '"goal": "deliver the lot"' in out


def test_a_tool_module_that_raises_at_import_is_a_clear_usage_error(tmp_path: Path, home: Path):
    module = f"broken_tools_{tmp_path.name}"  # a name no earlier test imported
    workflow = (FIXTURE.parent / "workflow.yaml").read_text()
    (tmp_path / "workflow.yaml").write_text(workflow.replace("deliveries_tools:", f"{module}:"))
    (tmp_path / f"{module}.py").write_text("raise RuntimeError('no config found')\n")
    code, _, err = cli("run", str(tmp_path / "workflow.yaml"), "--goal", "g")
    assert code == 2
    assert f"importing '{module}' for tool 'deliver'" in err
    assert "failed: RuntimeError: no config found" in err and "Traceback" not in err
    assert not (home / "ledger.db").exists()


def test_numeric_arguments_are_validated(escaped_task: str):
    for argv, message in (
        (("replay", escaped_task, "--until", "-5"), "argument --until: -5 is below the minimum"),
        (("tasks", "--limit", "-1"), "argument --limit: -1 is below the minimum of 1"),
        (("tasks", "--limit", "many"), "argument --limit: 'many' is not a whole number"),
    ):
        err = io.StringIO()
        sys_err, sys.stderr = sys.stderr, err  # argparse writes its usage line to sys.stderr
        try:
            assert main(list(argv)) == 2
        finally:
            sys.stderr = sys_err
        assert message in err.getvalue()


def test_untrusted_text_is_escaped_in_every_view(escaped_task: str, home: Path):
    for argv in (
        ("events", escaped_task),
        ("status", escaped_task),
        ("replay", escaped_task),
        ("tasks",),
    ):
        code, out, err = cli(*argv)
        assert code == 0
        assert "\x1b" not in out + err and "\x9b" not in out + err, argv
    # a control sequence smuggled into a stored column reaches `tasks` escaped too
    db = sqlite3.connect(home / "ledger.db")
    db.execute(
        "UPDATE events SET type = 'x\x1b[31m' WHERE offset = (SELECT MAX(offset) FROM events)"
    )
    db.commit()
    db.close()
    code, out, _ = cli("tasks")
    assert code == 0 and "x\\x1b[31m" in out and "\x1b" not in out
    code, out, _ = cli("events", escaped_task, "--json")
    assert code == 0 and "\x1b" not in out  # JSON escapes it as \\u001b
    assert "\\u001b]0;pwned" in out


def test_a_missing_or_locked_ledger_is_exit_4(home: Path, escaped_task: str, monkeypatch):
    code, _, err = cli("--db", str(home / "nope.db"), "events", "x")
    assert code == 4
    assert one_line_error(err) == (
        f"error: no ledger at {home / 'nope.db'}; check --db / AGENTLEDGER_HOME (a run creates it)"
    )
    assert not (home / "nope.db").exists()
    monkeypatch.setenv("AGENTLEDGER_SQLITE_BUSY_TIMEOUT_S", "0.2")
    locker = sqlite3.connect(home / "ledger.db", isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = cli("run", str(FIXTURE), "--goal", "deliver")
        assert code == 4
        assert "database is locked" in err and "Traceback" not in err
        code, _, err = cli("status", escaped_task)
        assert code == 4 and "database is locked" in err
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@pytest.fixture(params=["ledger.db", "vault.db"])
def read_only_ledger(
    home: Path, escaped_task: str, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """The ledger (or its vault) made unwritable even for root (immutable), else by
    permissions."""
    files = [home / request.param]
    if os.geteuid() == 0:
        for f in files:
            subprocess.run(["chattr", "+i", str(f)], check=True)
    else:
        for f in files:
            f.chmod(0o444)
    try:
        yield home / "ledger.db"
    finally:
        for f in files:
            if os.geteuid() == 0:
                subprocess.run(["chattr", "-i", str(f)], check=True)
            f.chmod(0o644)


def test_a_read_only_ledger_is_exit_4_not_a_traceback(read_only_ledger: Path):
    code, _, err = cli("run", str(FIXTURE), "--goal", "deliver to jane@example.com")
    assert code == 4
    assert "readonly database" in err and "Traceback" not in err
    code, out, _ = cli("tasks")  # reading still works
    assert code == 0 and "task_completed" in out


def test_a_closed_stdout_ends_quietly(escaped_task: str, home: Path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentledger.cli", "events", escaped_task, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "AGENTLEDGER_HOME": str(home)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` that has read enough
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""
