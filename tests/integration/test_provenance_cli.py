"""Provenance through the CLI: ``agentledger run`` of a workflow file on a real SQLite ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli, ledger_events

FIXTURES = Path(__file__).parent.parent / "fixtures" / "poisoned"
WORKFLOW = FIXTURES / "workflow.yaml"
sys.path.insert(0, str(FIXTURES))
from poisoned_model import NOTES  # noqa: E402


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "notes.txt").write_text(NOTES)
    return tmp_path


def outbox(home: Path) -> list[str]:
    path = home / "sandbox" / "outbox.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_a_recipient_only_the_document_names_is_refused(home: Path) -> None:
    code, out, err = cli("validate", str(WORKFLOW))
    assert code == 0, err
    code, out, err = cli("run", str(WORKFLOW), "--goal", "Summarise notes.txt")
    assert code == 0, err
    task_id = out.splitlines()[0].split()[1]
    assert "send_email.to = [email:" in out and "comes from untrusted data (tool:read_file#" in out
    assert outbox(home) == []
    events = ledger_events(home, task_id)
    flagged = [e for e in events if e.type == "untrusted_argument"]
    assert len(flagged) == 1
    read_call = next(e for e in events if e.type == "tool_call_requested").call_id
    assert flagged[0].sources == [f"tool:read_file#{read_call}"]
    refused = next(e for e in events if e.type == "tool_call_rejected")
    assert refused.error_kind == "untrusted_argument"
    # what the CLI shows of the task: the refusal and its reason, masked
    code, out, _ = cli("events", task_id, "--json")
    assert code == 0
    shown = [json.loads(line) for line in out.splitlines() if line.strip()]
    (row,) = [e for e in shown if e["type"] == "untrusted_argument"]
    assert row["value"].startswith("[email:") and "drop@evil.example" not in out


def test_a_recipient_on_the_allow_list_proceeds(home: Path) -> None:
    code, out, err = cli("run", str(WORKFLOW), "--goal", "Summarise notes.txt for the ops team")
    assert code == 0, err
    task_id = out.splitlines()[0].split()[1]
    assert outbox(home) == ["ops@example.com\tRevenue grew 4%."]
    types = [e.type for e in ledger_events(home, task_id)]
    assert "untrusted_argument" not in types and "tool_call_rejected" not in types
