"""One owner per task, and a run that is signalled or loses its ledger: real `agentledger`
processes against one SQLite ledger. A side-effecting tool blocks until the test drops a
"release" file, so each test acts while a side effect is in flight and waits for events
in the ledger (or lines on stderr), not for time to pass."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

HELD = Path(__file__).parent.parent / "fixtures" / "held" / "workflow.yaml"


class Agentledger:
    """Runs `python -m agentledger.cli` with one home, output to files the test can poll."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = {**os.environ, "AGENTLEDGER_HOME": str(home), **env}
        self.db = home / "ledger.db"
        self.sandbox = home / "sandbox"
        self._n = 0

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        self._n += 1
        out, err = self.home / f"out{self._n}.txt", self.home / f"err{self._n}.txt"
        self.home.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as stdout, err.open("wb") as stderr:  # the child keeps its copies
            proc = subprocess.Popen(
                [sys.executable, "-m", "agentledger.cli", *args],
                env=self.env,
                stdout=stdout,
                stderr=stderr,
            )
        return proc, out, err

    def run(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        proc, out, err = self.start(*args)
        code = proc.wait(timeout=timeout)
        return code, out.read_text(), err.read_text()

    def events(self) -> list[dict[str, Any]]:
        if not self.db.exists():
            return []
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT data FROM events ORDER BY offset").fetchall()
            return [orjson.loads(r[0]) for r in rows]
        except sqlite3.OperationalError:  # the runner is creating the schema
            return []
        finally:
            con.close()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def executions(self) -> list[str]:
        log = self.sandbox / "executions.log"
        return log.read_text().splitlines() if log.exists() else []

    def release(self) -> None:
        (self.sandbox / "release").touch()


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert proc.poll() is None, f"the process exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def al(tmp_path: Path) -> Agentledger:
    return Agentledger(tmp_path / "home")


def _start_held(al: Agentledger) -> tuple[subprocess.Popen[bytes], Path, Path, str]:
    proc, out, err = al.start("run", str(HELD), "--goal", "deliver p1")
    wait_for("the side effect to start", lambda: bool(al.executions()), proc)
    assert "tool_call_started" in al.types()
    return proc, out, err, al.events()[0]["task_id"]


def test_resume_refuses_a_task_a_live_run_drives_and_leaves_its_calls_alone(al: Agentledger):
    run, out, err, task_id = _start_held(al)
    try:
        code, _, resume_err = al.run("resume", task_id)
        assert code == 5, resume_err
        assert f"task {task_id} is being driven by another process (pid {run.pid} on " in (
            resume_err
        )
        assert "Traceback" not in resume_err
        # the racing process wrote nothing: the live run's call is not outcome_unknown
        assert al.types()[-1] == "tool_call_started"
        al.release()
        assert run.wait(timeout=60) == 0, err.read_text()
    finally:
        if run.poll() is None:
            run.kill()
    types = al.types()
    assert types[-1] == "task_completed"
    assert "task_lease_taken_over" not in types
    assert not [e for e in al.events() if e.get("error_kind") == "outcome_unknown"]
    assert len(al.executions()) == 1
    assert f"task {task_id} completed" in out.read_text()
    code, report, _ = al.run("doctor")
    assert code == 0 and "no task leases held" in report and "healthy" in report


def test_resume_takes_over_the_lease_of_a_killed_run_and_records_it(al: Agentledger):
    run, _, _, task_id = _start_held(al)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    code, report, _ = al.run("doctor")
    assert code == 0 and f"lease on task {task_id}" in report and "owner_gone" in report
    al.release()
    code, _, err = al.run("resume", task_id)
    assert code == 0, err
    takeover = next(e for e in al.events() if e["type"] == "task_lease_taken_over")
    assert (takeover["reason"], takeover["previous_pid"]) == ("owner_gone", run.pid)
    # the killed run's side effect really is unknown: reported, not run again
    unknown = [e for e in al.events() if e.get("error_kind") == "outcome_unknown"]
    assert len(unknown) == 1 and len(al.executions()) == 1
    assert al.types()[-1] == "task_completed"


def _plant_lease(db: Path, task_id: str, *, host: str, age_s: float) -> None:
    con = sqlite3.connect(db)
    now = time.time()
    con.execute(
        "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
        (task_id, f"{host}:999999:feedbeef", 999999, host, now - age_s, now - age_s),
    )
    con.commit()
    con.close()


def test_a_live_lease_elsewhere_is_taken_only_with_take_over_and_a_stale_one_freely(
    al: Agentledger,
):
    run, _, _, task_id = _start_held(al)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    al.release()
    _plant_lease(al.db, task_id, host="elsewhere", age_s=1)
    code, _, err = al.run("resume", task_id)
    assert code == 5 and "(pid 999999 on elsewhere, heartbeat " in err
    assert "--take-over" in err
    code, _, err = al.run("resume", task_id, "--take-over")
    assert code == 0, err
    takeover = next(e for e in al.events() if e["type"] == "task_lease_taken_over")
    assert (takeover["reason"], takeover["previous_host"]) == ("forced", "elsewhere")
    assert takeover["previous_owner"] == "elsewhere:999999:feedbeef"

    al2 = Agentledger(al.home.parent / "home2", AGENTLEDGER_LEASE_STALE_AFTER_S="5")
    run, _, _, task_id = _start_held(al2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    al2.release()
    _plant_lease(al2.db, task_id, host="elsewhere", age_s=60)
    code, _, err = al2.run("resume", task_id)
    assert code == 0, err
    takeover = next(e for e in al2.events() if e["type"] == "task_lease_taken_over")
    assert takeover["reason"] == "stale" and takeover["previous_heartbeat_age_s"] >= 60


def test_sigterm_lets_the_in_flight_call_finish_records_the_stop_and_exits_3(al: Agentledger):
    run, _, err, task_id = _start_held(al)
    run.send_signal(signal.SIGTERM)
    wait_for("the signal to be taken", lambda: "SIGTERM: no new work" in err.read_text(), run)
    al.release()  # the call finishes within the grace
    assert run.wait(timeout=60) == 3, err.read_text()
    assert f"`agentledger resume {task_id}` continues" in err.read_text()
    assert "Traceback" not in err.read_text()
    events = al.events()
    stop = events[-1]
    assert stop["type"] == "run_interrupted"
    assert (stop["signal"], stop["finished_in_grace"], stop["cut_short"]) == ("SIGTERM", 1, [])
    assert events[-2]["type"] == "tool_call_completed"  # recorded, not left to outcome_unknown
    code, _, resume_err = al.run("resume", task_id)
    assert code == 0, resume_err
    assert not [e for e in al.events() if e.get("error_kind") == "outcome_unknown"]
    assert len(al.executions()) == 1
    assert al.types()[-1] == "task_completed"


def test_sigint_past_the_grace_cuts_the_call_short_and_says_what_was_left(tmp_path: Path):
    al = Agentledger(tmp_path / "home", AGENTLEDGER_SHUTDOWN_GRACE_S="0.2")
    run, _, err, task_id = _start_held(al)
    started = next(e for e in al.events() if e["type"] == "tool_call_started")
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 3, err.read_text()
    stop = al.events()[-1]
    assert stop["type"] == "run_interrupted"
    assert (stop["signal"], stop["grace_s"]) == ("SIGINT", 0.2)
    assert stop["cut_short"] == [f"tool_call_started#{started['seq']}"]
    al.release()
    code, _, resume_err = al.run("resume", task_id)
    assert code == 0, resume_err
    unknown = [e for e in al.events() if e.get("error_kind") == "outcome_unknown"]
    assert len(unknown) == 1 and len(al.executions()) == 1


def test_a_ledger_unlinked_mid_run_stops_the_run_with_exit_4(al: Agentledger):
    run, out, err, _ = _start_held(al)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{al.db}{suffix}").unlink(missing_ok=True)
    al.release()
    assert run.wait(timeout=60) == 4
    message = err.read_text()
    assert "was deleted or replaced while this process used it (its inode changed)" in message
    assert "Traceback" not in message
    assert "completed" not in out.read_text().splitlines()[-1]


def test_approve_refuses_to_drive_a_task_another_process_drives_before_deciding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import io

    from agentledger.cli import main

    def cli(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()

    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    workflow = Path(__file__).parent.parent / "fixtures" / "approvals" / "workflow.yaml"
    code, out, err = cli("run", str(workflow), "--goal", "nightly maintenance")
    assert code == 3, err  # paused for the approval
    task_id = out.splitlines()[0].split()[1]
    approval_id = next(w for w in out.split() if w.startswith("ap-"))
    _plant_lease(tmp_path / "ledger.db", task_id, host="elsewhere", age_s=0)
    count = len(Agentledger(tmp_path).events())
    code, _, err = cli("approve", approval_id)  # decide, then drive the task on
    assert code == 5
    assert f"task {task_id} is being driven by another process (pid 999999 on elsewhere" in err
    assert "nothing was decided. Decide with --no-continue" in err
    assert len(Agentledger(tmp_path).events()) == count
    code, out, err = cli("approve", approval_id, "--no-continue")  # the owner takes it in
    assert code == 0, err
    assert Agentledger(tmp_path).types()[-1] == "approval_granted"


def test_a_forced_takeover_stops_the_previous_owner_at_its_next_heartbeat(tmp_path: Path):
    al = Agentledger(tmp_path / "home", AGENTLEDGER_LEASE_STALE_AFTER_S="1.5")  # beat: 0.5 s
    run, _, err, task_id = _start_held(al)
    try:
        code, _, resume_err = al.run("resume", task_id, "--take-over")
        assert code == 0, resume_err
        assert run.wait(timeout=60) == 4
    finally:
        if run.poll() is None:
            run.kill()
    assert f"task {task_id} was taken over" in err.read_text()
    assert "this process stopped driving it" in err.read_text()
    assert "Traceback" not in err.read_text()
    takeover = next(e for e in al.events() if e["type"] == "task_lease_taken_over")
    assert (takeover["reason"], takeover["previous_pid"]) == ("forced", run.pid)
    # forcing is the operator's call: the live call it took over is reported, not re-run
    unknown = [e for e in al.events() if e.get("error_kind") == "outcome_unknown"]
    assert len(unknown) == 1 and len(al.executions()) == 1
    assert al.types()[-1] == "task_completed"
