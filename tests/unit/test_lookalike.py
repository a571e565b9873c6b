"""Allow-lists compare canonical forms: NFKC, case folding, IDNA; look-alikes are named."""

from __future__ import annotations

import pytest

from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.llm import ScriptedModel, call_tool, reply, reply_json
from agentledger.projections.task_state import TaskState
from agentledger.security.lookalike import canonical_address, canonical_domain, skeleton
from agentledger.security.policy import PolicyContext, ToolPolicy, domain_allowed
from agentledger.testing import run_goal
from agentledger.tools import tool

CTX = PolicyContext("t", "s", "a", "notify", TaskState(task_id="t"))
CYRILLIC_E = "\u0435"


def test_canonical_forms() -> None:
    assert canonical_domain("Example.COM.") == "example.com"
    assert canonical_domain("\uff45xample.com") == "example.com"  # fullwidth e is e to DNS
    assert canonical_domain(f"{CYRILLIC_E}vil.t{CYRILLIC_E}st") == "xn--vil-qdd.xn--tst-rdd"
    assert canonical_domain("ex ample.com") is None
    assert canonical_domain("127.0.0.1") == "127.0.0.1"
    assert canonical_address("Ops@B\u00fccher.de") == "ops@xn--bcher-kva.de"
    assert skeleton(f"x@{CYRILLIC_E}xample.com") == "x@example.com"


@pytest.mark.parametrize(
    "address",
    [
        f"x@{CYRILLIC_E}vil.t{CYRILLIC_E}st",  # the report's address, outside the list
        f"x@{CYRILLIC_E}xample.com",  # a homoglyph of the allowed domain
        "ops@example.c\u043em",  # Cyrillic o in the TLD
        "\u043eps@example.org",  # Cyrillic o in the local part of a listed address
    ],
)
def test_a_homoglyph_recipient_is_refused(address: str) -> None:
    policy = ToolPolicy(allowed_recipients=("@example.com", "ops@example.org"))
    problems = policy.problems({"to": address, "text": "hi"}, CTX)
    assert len(problems) == 1
    assert address in problems[0]
    assert "not an allowed recipient" in problems[0] or "only looks like" in problems[0]


def test_a_lookalike_is_named_in_the_refusal() -> None:
    policy = ToolPolicy(allowed_recipients=("@example.com",))
    (problem,) = policy.problems({"to": f"x@{CYRILLIC_E}xample.com"}, CTX)
    assert "only looks like the allowed '@example.com'" in problem
    assert "xn--" in problem


def test_real_recipients_still_pass_in_any_case_or_width() -> None:
    policy = ToolPolicy(allowed_recipients=("@example.com", "ops@b\u00fccher.de"))
    assert policy.problems({"to": "Ann@EXAMPLE.com"}, CTX) == []
    assert policy.problems({"to": "ann@\uff45xample.com"}, CTX) == []
    assert policy.problems({"to": "ops@xn--bcher-kva.de"}, CTX) == []


def test_domains_compare_canonically() -> None:
    assert domain_allowed("docs.Example.com", ("example.com",))
    assert not domain_allowed(f"docs.{CYRILLIC_E}xample.com", ("example.com",))
    assert not domain_allowed("example.com.evil.test", ("example.com",))
    policy = ToolPolicy(allowed_domains=("example.com",))
    (problem,) = policy.problems({"url": f"https://{CYRILLIC_E}xample.com/x"}, CTX)
    assert "only looks like the allowed 'example.com'" in problem


async def test_in_a_run_a_homoglyph_recipient_is_refused_and_the_tool_never_runs() -> None:
    sent: list[str] = []

    @tool(risk="external", side_effect=True, raw_values={"to": ("email",)})
    def notify(to: str, text: str) -> str:
        sent.append(to)
        return "sent"

    spoof = f"x@{CYRILLIC_E}vil.t{CYRILLIC_E}st"
    wf = Workflow.build(
        name="spoof",
        orchestrator="planner",
        agents=[AgentSpec("planner", routes_to=("clerk",)), AgentSpec("clerk", tools=("notify",))],
        tools=[notify],
        tool_policies={"notify": ToolPolicy(allowed_recipients=("@example.com",))},
    )
    model = ScriptedModel(
        {
            "planner": [reply_json({"subtasks": [{"id": "c", "agent": "clerk"}]})],
            "clerk": [call_tool("notify", to=spoof, text="hi"), reply("done")],
        }
    )
    run = await run_goal(wf, model, "notify the customer")
    assert sent == []
    (refused,) = run.of_type("tool_call_rejected")
    assert refused.error_kind == "policy_violation"
    assert "is not an allowed recipient (@example.com)" in refused.reason
