"""Which calls need approval: the risk threshold, per-tool overrides, and the config checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.agents.approval_policy import ApprovalPolicy, approval_id
from agentledger.agents.workflow import load_workflow
from agentledger.errors import WorkflowError
from agentledger.tools import tool


@tool(risk="external")
def post(text: str) -> str:
    return text


@tool(risk="read", requires_approval=True)
def peek(key: str) -> str:
    return key


def test_risk_threshold_and_tool_overrides():
    assert not ApprovalPolicy().requires(post)  # default: destructive only
    assert ApprovalPolicy(min_risk="write").requires(post)
    assert not ApprovalPolicy(min_risk=None).requires(post)
    assert ApprovalPolicy(min_risk=None).requires(peek)  # the tool's own flag wins


def test_escalation_needs_an_approver():
    with pytest.raises(ValueError, match="escalate needs escalate_to"):
        ApprovalPolicy(on_timeout="escalate")


def test_approval_ids_are_short_typable_and_distinct():
    ids = {approval_id("t", f"key{i}", "call_1") for i in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 10 and i.startswith("ap-") and not set(i[3:]) & set("01ilo") for i in ids)


def test_workflow_file_sets_the_policy_and_per_tool_overrides(tmp_path: Path):
    fixture = Path(__file__).parents[1] / "fixtures" / "approvals"
    text = (fixture / "workflow.yaml").read_text()
    text = text.replace(
        'wipe_table: {function: "approvals_tools:wipe_table"}',
        'wipe_table: {function: "approvals_tools:wipe_table", requires_approval: false}\n'
        '  count_rows: {function: "approvals_tools:count_rows", requires_approval: true}',
    ).replace(
        "approvals: {min_risk: destructive, timeout_s: 86400, on_timeout: deny}",
        "approvals: {min_risk: write, timeout_s: 60, on_timeout: escalate, escalate_to: lead}",
    )
    path = fixture / "override.yaml"
    path.write_text(text)
    try:
        wf = load_workflow(path)
    finally:
        path.unlink()
    policy = wf.approvals
    assert (policy.min_risk, policy.timeout_s, policy.escalate_to) == ("write", 60, "lead")
    assert not policy.requires(wf.tools.get("wipe_table"))
    assert policy.requires(wf.tools.get("count_rows"))

    bad = tmp_path / "bad.yaml"
    bad.write_text((fixture / "workflow.yaml").read_text().replace("deny", "shrug"))
    with pytest.raises(WorkflowError, match=r"approvals\.on_timeout"):
        load_workflow(bad)
