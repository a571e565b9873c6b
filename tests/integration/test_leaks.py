"""A corpus of personal data and secrets flows through a real `agentledger run`: none of it
reaches the ledger file (unless the primary log is raw by choice), the CLI's output and
logs, or the ClickHouse audit copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentledger.audit.cli import main as cli_main
from agentledger.audit.store import AuditStore
from tests.support.audit import (
    audit_chdb_dir,  # noqa: F401
    audit_database,  # noqa: F401
    audit_store,  # noqa: F401
    audit_url,  # noqa: F401
)

pytestmark = pytest.mark.integration

LEAKY = Path(__file__).parent.parent / "fixtures" / "leaky" / "workflow.yaml"
CORPUS = [
    "ann.lee@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "192.168.1.20",
    "sk-proj-abcdefghijklmnop1234",
    "abcdef1234567890abcdef",
]


def _bytes(home: Path, name: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.glob(f"{name}*")))


@pytest.mark.parametrize("primary_log", ["masked", "raw"])
def test_the_corpus_leaks_nowhere(
    primary_log: str,
    tmp_path: Path,
    audit_store: AuditStore,  # noqa: F811
    audit_url: str,  # noqa: F811
) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "customer.txt").write_text(
        "Customer file. IBAN DE89 3704 0044 0532 0130 00, last login from 192.168.1.20.\n"
        "Authorization: Bearer abcdef1234567890abcdef\n"
    )
    env = {**os.environ, "AGENTLEDGER_HOME": str(tmp_path), "AGENTLEDGER_PRIMARY_LOG": primary_log}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentledger.cli",
            "-v",
            "run",
            str(LEAKY),
            "--goal",
            "Summarise the customer file for ann.lee@example.com",
            "--input",
            "customer=phone +44 20 7946 0958, card 4111 1111 1111 1111",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    # the careless tool logged its raw arguments: masked on the way to stderr
    assert "WARNING leaky_tools: notifying [email]: your card [card] is blocked" in run.stderr
    ledger = _bytes(tmp_path, "ledger.db")
    for value in CORPUS:
        assert value not in run.stderr, value
        if primary_log == "masked":  # a raw primary log is raw by choice, and so is its view
            assert value not in run.stdout, value
            assert value.encode() not in ledger, value
    if primary_log == "raw":
        assert b"ann.lee@example.com" in ledger
    # the final result leaves the system masked in both modes
    result = run.stdout.split("\n\n")[-2]
    assert result.startswith("Done. Key [api_key") and "[card" in result, run.stdout
    # the tool that declares raw_values got the real address
    assert (sandbox / "outbox.txt").read_text().startswith("ann.lee@example.com\t")

    # the audit copy (ClickHouse, chdb) is masked whatever the primary log keeps
    ledger_path = str(tmp_path / "ledger.db")
    assert cli_main(["--db", ledger_path, "audit", "sync", "--clickhouse", audit_url]) == 0
    db = audit_store.database
    rows = audit_store.query(f"SELECT type, payload FROM {db}.audit_events").rows
    assert len(rows) > 15
    payloads = "\n".join(str(payload) for _, payload in rows)
    for value in CORPUS:
        assert value not in payloads, value
    assert "[email" in payloads and "[iban" in payloads
