"""A workflow file switched to a real OpenAI-compatible endpoint with environment variables
only: the CLI run goes through the real `openai` client over HTTP to a local server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agentledger.cli import main
from tests.support.openai_server import (
    OpenAIStubServer,
    answer,
    json_answer,
    rate_limited,
    tool_call_reply,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "deliveries" / "workflow.yaml"


def test_run_against_an_openai_compatible_server_with_no_code_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    plan = {
        "subtasks": [
            {"id": "p1", "agent": "courier", "description": "deliver p1"},
            {"id": "report", "agent": "reporter", "description": "report", "depends_on": ["p1"]},
        ]
    }
    replies = [
        json_answer(plan, prompt_tokens=300, completion_tokens=40),
        rate_limited(retry_after="0"),
        tool_call_reply(
            ("deliver", {"parcel": "p1", "address": "1 Main Street"}),
            prompt_tokens=200,
            completion_tokens=20,
        ),
        json_answer(
            {"parcel": "p1", "delivered": True},
            prompt_tokens=260,
            completion_tokens=12,
            cached_tokens=100,
        ),
        answer("p1 was delivered", prompt_tokens=150, completion_tokens=6),
    ]
    with OpenAIStubServer(replies, models=("gpt-4o-mini",)) as server:
        monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
        monkeypatch.setenv("AGENTLEDGER_MODEL_PROVIDER", "openai")
        monkeypatch.setenv("AGENTLEDGER_MODEL_NAME", "gpt-4o-mini")
        monkeypatch.setenv("AGENTLEDGER_MODEL_BASE_URL", server.base_url)
        monkeypatch.setenv("TEST_SECRET_KEY", "sk-test-abcdefghijklmnopqrstuvwxyz123456")
        monkeypatch.setenv("AGENTLEDGER_MODEL_API_KEY_ENV", "TEST_SECRET_KEY")
        # A local server is not OpenAI: its gpt-4o-mini is priced only if someone says so.
        prices = tmp_path / "prices.toml"
        prices.write_text(
            '[models."gpt-4o-mini"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.6\n'
            "cached_input_per_mtok = 0.075\n"
        )
        monkeypatch.setenv("AGENTLEDGER_PRICES_FILE", str(prices))
        out, err = io.StringIO(), io.StringIO()
        code = main(["run", str(FIXTURE), "--goal", "deliver p1"], out=out, err=err)
        assert code == 0, err.getvalue()
        server.assert_complete()
        sent = server.bodies
    assert "scripted" not in err.getvalue()
    assert out.getvalue().strip().endswith("completed")
    # the courier's request carried its allowed tool and its output contract
    courier = next(
        b for b in sent if any(t["function"]["name"] == "deliver" for t in b.get("tools", []))
    )
    assert courier["response_format"]["type"] == "json_schema"
    task_id = out.getvalue().strip().splitlines()[-1].split()[1]
    events_out = io.StringIO()
    main(["events", task_id, "--json"], out=events_out)
    events = [json.loads(line) for line in events_out.getvalue().splitlines()]
    llm = [e for e in events if e["type"] == "llm_call_completed"]
    assert [e["model"] for e in llm] == ["gpt-4o-mini"] * 4
    assert [e["usage"]["input_tokens"] for e in llm] == [300, 200, 260, 150]
    assert llm[1]["attempts"] == 2  # the 429 was retried
    assert llm[2]["usage"]["cached_tokens"] == 100
    # cost from the prices file: gpt-4o-mini $0.15 / $0.60 per Mtok, cached input $0.075
    assert llm[0]["cost_usd"] == pytest.approx((300 * 0.15 + 40 * 0.6) / 1e6)
    assert llm[2]["cost_usd"] == pytest.approx((160 * 0.15 + 100 * 0.075 + 12 * 0.6) / 1e6)
    # the full response is in the event, so replay never needs the model
    assert llm[0]["raw_response"]["choices"][0]["message"]["content"]
    # the key never reaches the log
    ledger = (tmp_path / "ledger.db").read_bytes()
    assert b"sk-test-abcdefghijklmnop" not in ledger


EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "research_brief" / "workflow.yaml"


def test_the_research_brief_example_runs_against_an_openai_compatible_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The flagship example, unchanged, with its model switched by environment variables.
    The planner (a real model here, scripted over HTTP) chooses one research subtask, so the
    order of requests on the server is fixed."""
    plan = {
        "subtasks": [
            {
                "id": "practices",
                "agent": "researcher",
                "description": "Search for: idempotency retries",
            },
            {
                "id": "write",
                "agent": "writer",
                "description": "write the brief",
                "depends_on": ["practices"],
            },
            {
                "id": "review",
                "agent": "reviewer",
                "description": "review and save",
                "depends_on": ["write"],
            },
        ]
    }
    point = "Keep an idempotency ledger of completed keys and answer duplicates from it."
    findings = {
        "aspect": "practices",
        "key_points": [{"point": point, "source": "idempotency-keys.md"}],
        "sources": ["idempotency-keys.md"],
    }
    brief = {
        "title": "Idempotency in agent systems",
        "summary": "Why idempotency keys make retries and crash recovery safe.",
        "sections": [{"heading": "Practices", "body": f"- {point} [idempotency-keys.md]"}],
        "sources": ["idempotency-keys.md"],
    }
    markdown = "# Idempotency in agent systems\n\nWhy idempotency keys make retries safe.\n"
    replies = [
        json_answer(plan),
        tool_call_reply(("search_notes", {"query": "idempotency retries"})),
        json_answer(findings),
        json_answer(brief),
        tool_call_reply(("save_brief", {"markdown": markdown})),
        json_answer(
            {
                "approved": True,
                "score": 8,
                "issues": [],
                "brief_markdown": markdown,
                "saved_to": "briefs/x.md",
            }
        ),
    ]
    with OpenAIStubServer(replies) as server:
        monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
        monkeypatch.setenv("AGENTLEDGER_MODEL_PROVIDER", "openai")
        monkeypatch.setenv("AGENTLEDGER_MODEL_NAME", "gpt-4o-mini")
        monkeypatch.setenv("AGENTLEDGER_MODEL_BASE_URL", server.base_url)
        out, err = io.StringIO(), io.StringIO()
        code = main(
            [
                "run",
                str(EXAMPLE),
                "--goal",
                "Write a brief on idempotency",
                "-o",
                str(tmp_path / "b.md"),
            ],
            out=out,
            err=err,
        )
        assert code == 0, err.getvalue() + out.getvalue()
        server.assert_complete()
        bodies = server.bodies
    assert (tmp_path / "b.md").read_text() == markdown + "\n"
    # the researcher was offered exactly its allowed tool; the search really ran over the corpus
    researcher = bodies[1]
    assert [t["function"]["name"] for t in researcher["tools"]] == ["search_notes"]
    tool_result = next(m for m in bodies[2]["messages"] if m["role"] == "tool")
    assert "idempotency-keys.md" in tool_result["content"]
    # the writer saw the research output and nothing it did not depend on
    assert (
        point in bodies[3]["messages"][1]["content"]
        and "review" not in bodies[3]["messages"][1]["content"]
    )
    saved = list((tmp_path / "sandbox" / "briefs").glob("*.md"))
    assert [p.read_text() for p in saved] == [markdown]
