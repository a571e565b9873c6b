"""Every value of the sensitive corpus is masked in every sink of an embedded deployment:
the ledger file's bytes, ``events``/``replay``/``status`` (text and ``--json``), every other
CLI output, Python logs, and the ClickHouse audit table (chdb). The values come in through
the goal, an input, a document, tool arguments, an approval's note, a denial's reason and
the model's JSON answer (right after JSON escapes)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import stat
from pathlib import Path

import pytest

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.audit.store import AuditStore
from agentledger.cli import main
from agentledger.settings import Settings
from agentledger.streams.sqlite import SqliteEventLog
from tests.support.audit import (
    audit_chdb_dir,  # noqa: F401
    audit_database,  # noqa: F401
    audit_store,  # noqa: F401
    audit_url,  # noqa: F401
)
from tests.support.sensitive import Sensitive, corpus, leaked

pytestmark = pytest.mark.integration

WORKFLOW = Path(__file__).parent.parent / "fixtures" / "sensitive" / "workflow.yaml"
CORPUS = corpus()
ALL_TEXT = "\n".join(item.text for item in CORPUS)


class Sinks:
    """What a person or a process could read, by sink name."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str | bytes]] = {}

    def add(self, sink: str, data: str | bytes) -> None:
        self.seen.setdefault(sink, []).append(data)

    def leaks(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sink, items in self.seen.items():
            found: set[Sensitive] = set()
            for data in items:
                found.update(leaked(CORPUS, data))
            if found:
                out[sink] = sorted(f"{s.category}: {s.value!r}" for s in found)
        return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AGENTLEDGER_HOME", str(home))
    sandbox = home / "sandbox"
    sandbox.mkdir(parents=True)
    (sandbox / "customer.txt").write_text("Customer file.\n" + ALL_TEXT + "\n", encoding="utf-8")
    return home


def cli(sinks: Sinks, *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    sinks.add(f"cli {argv[0]}" + (" --json" if "--json" in argv else ""), out.getvalue())
    sinks.add(f"cli {argv[0]} (stderr)", err.getvalue())
    return code, out.getvalue() + err.getvalue()


def paused_run(sinks: Sinks) -> tuple[str, str]:
    code, out = cli(
        sinks, "run", str(WORKFLOW), "--goal", "Handle this:\n" + ALL_TEXT,
        "--input", "customer=" + ALL_TEXT.replace("\n", " | "),
    )  # fmt: skip
    assert code == 3, out  # waiting for the approval of purge
    task_id = out.splitlines()[0].split()[1]
    approval_id = next(w for w in out.split() if w.startswith("ap-"))
    return task_id, approval_id


def test_no_value_of_the_corpus_reaches_any_sink(
    home: Path,
    caplog: pytest.LogCaptureFixture,
    audit_store: AuditStore,  # noqa: F811
    audit_url: str,  # noqa: F811
) -> None:
    caplog.set_level(logging.INFO)
    sinks = Sinks()
    # One task approved with a note full of values, one denied with such a reason.
    granted, approval = paused_run(sinks)
    cli(sinks, "approvals")
    cli(sinks, "approvals", "--json")
    code, out = cli(sinks, "approve", approval, "--by", "ann", "--note", ALL_TEXT)
    assert code == 0, out
    denied, approval = paused_run(sinks)
    code, out = cli(sinks, "deny", approval, "--by", "bob", "--reason", ALL_TEXT)
    assert code in (0, 1), out

    for task in (granted, denied):
        for argv in (
            ["events", task],
            ["events", task, "--json"],
            ["replay", task],
            ["replay", task, "--json"],
            ["status", task],
            ["status", task, "--json"],
        ):
            code, out = cli(sinks, *argv)
            assert code in (0, 1), out
    cli(sinks, "tasks")
    # The approved task ran to the end with the model's JSON answer; it is still JSON.
    _, out = cli(sinks, "status", granted, "--json")
    state = json.loads(out)
    assert state["status"] == "completed", state
    answer = json.loads(state["result"])
    assert set(answer) == {"summary", "texts"} and len(answer["texts"]) == len(CORPUS)
    for category in {item.category for item in CORPUS}:
        assert f"[{category}:" in out, category  # masked as placeholders, by category

    for name in ("ledger.db", "ledger.db-wal"):
        path = home / name
        if path.exists():
            sinks.add("ledger bytes", path.read_bytes())
    sinks.add("logs", caplog.text)
    assert "looking up" in caplog.text and "purging" in caplog.text  # the careless tool logged

    ledger = str(home / "ledger.db")
    assert main(["--db", ledger, "audit", "sync", "--clickhouse", audit_url]) == 0
    db = audit_store.database
    rows = audit_store.query(f"SELECT * FROM {db}.audit_events").rows
    assert len(rows) > 20
    sinks.add("audit table", "\n".join(str(row) for row in rows))

    leaks = sinks.leaks()
    assert not leaks, json.dumps(leaks, indent=1, ensure_ascii=False)
    # the raw values are kept in the vault only, for tools that may receive them
    assert b"ann.lee@example.com" in (home / "vault.db").read_bytes()


def test_the_ledger_vault_and_sandbox_are_owner_only(home: Path) -> None:
    paused_run(Sinks())
    for name in ("ledger.db", "vault.db"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    for wal in home.glob("*-wal"):
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600, wal.name
    # Directories created for them are 0700 (one that existed is left alone: it is not ours).
    fresh = home.parent / "fresh"
    settings = Settings(home=fresh / "home", sandbox=fresh / "sandbox" / "inner")
    asyncio.run(SqliteEventLog(settings.ledger_path).close())
    build_runtime(load_workflow(WORKFLOW, settings=settings), settings)
    for directory in (fresh, fresh / "home", fresh / "sandbox", fresh / "sandbox" / "inner"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE(settings.ledger_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o755  # made by the test, left as it was
