"""eval: the example suite (10 cases) with its judge on the OpenAI-compatible test server,
deltas reported and gated, results in the ClickHouse audit table; replay mode and the
side-effect guard counted on a real side-effecting tool."""

# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agentledger.audit.store import AuditStore
from agentledger.evaluation.runner import EvalRunner
from agentledger.evaluation.suite import load_suite
from agentledger.schemas import EvalCaseCompleted, EvalScoreRecorded
from agentledger.settings import Settings
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import task_events
from tests.support.audit import (  # fixtures are imported to be found by pytest
    audit_chdb_dir,  # noqa: F401
    audit_database,  # noqa: F401
    audit_url,  # noqa: F401
)
from tests.support.example_runs import EXAMPLES, cli
from tests.support.openai_server import OpenAIStubServer, json_answer

pytestmark = pytest.mark.integration

SUITE = EXAMPLES / "eval" / "suite.yaml"
DELIVERIES = Path(__file__).parents[1] / "fixtures" / "deliveries" / "workflow.yaml"
KEY = "sk-test-judge-0123456789abcdef"


def judge_scores(cases: int) -> list[tuple[float, float, float, float]]:
    """Per case (in suite order): baseline rep 0, rep 1, candidate rep 0, rep 1."""
    return [(0.9, 0.9, 0.5 + 0.02 * i, 0.7) for i in range(cases)]


def test_example_suite_with_an_llm_judge_reports_deltas_and_gates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audit_url: str
) -> None:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AGENTLEDGER_CLICKHOUSE_URL", audit_url)
    cases = load_suite(SUITE).dataset.cases
    assert len(cases) >= 10
    scores = judge_scores(len(cases))
    replies = [
        json_answer({"score": s, "reasoning": f"verdict {i}.{j}"})
        for i, per_case in enumerate(scores)
        for j, s in enumerate(per_case)
    ]
    with OpenAIStubServer(replies) as server:
        code, out, err = cli(
            "eval", str(SUITE), "--judge-base-url", server.base_url, "--concurrency", "1", "--audit"
        )
        server.assert_complete()  # one judge call per run, none more
        bodies = server.bodies
        auth = {
            v
            for r in server.chat_requests
            for k, v in r.headers.items()
            if k.lower() == "authorization"
        }
    assert code == 1, err  # the terse candidate crosses the suite's thresholds
    assert auth == {f"Bearer {KEY}"}
    run_id = out.strip().splitlines()[-1].split()[-1]
    assert len(bodies) == 4 * len(cases)
    system = bodies[0]["messages"][0]["content"]
    assert "RUBRIC:\nThe summary sentence states the total" in system
    assert bodies[0]["response_format"]["json_schema"]["name"] == "judge_verdict"
    assert '"text":"4 expenses: 217.70 EUR, 62.00 USD."' in bodies[0]["messages"][1]["content"]
    assert "Total 218 EUR, 62 USD." in bodies[2]["messages"][1]["content"]  # the candidate's
    # 4 of 10 cases have cents the candidate rounds away; its judge scores 0.5..0.68 and 0.7
    assert "pass rate dropped 70.0% (from 100.0% to 30.0%)" in out
    assert "score totals dropped 0.400" in out and "score faithful dropped" in out

    code, out, err = cli("eval", "report", run_id, "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["runs"] == {"baseline": 20, "candidate": 20}
    assert report["pass_rate"]["baseline"] == 1.0
    assert report["pass_rate"]["candidate"] == pytest.approx(0.3)
    faithful = report["scorers"]["faithful"]
    expected_candidate = sum((s[2] + s[3]) / 2 for s in scores) / len(scores)
    assert faithful["baseline"] == pytest.approx(0.9)
    assert faithful["candidate"] == pytest.approx(expected_candidate)
    low, high = faithful["ci95"]
    assert low < faithful["delta"] < high < 0  # a real interval, all below zero
    assert report["scorers"]["shape"]["delta"] == 0 and report["scorers"]["count"]["delta"] == 0
    by_case = {c["case_id"]: c for c in report["cases"]}
    assert by_case["cents"]["failing_scorers"] == ["faithful", "totals"]
    assert by_case["usd-only"]["pass_rate"]["candidate"] == 0.5  # the judge passes 0.7 only
    assert report["ok"] is False and len(report["breaches"]) == 3
    # thresholds given on the command line win over the suite's
    code, out, _ = cli(
        "eval", "report", run_id, "--max-pass-rate-drop", "1", "--max-score-drop", "1"
    )
    assert code == 0 and "ok: no threshold crossed" in out

    # the judge's verdicts are events carrying the rubric and the reasoning
    lines = cli("events", run_id, "--json")[1].splitlines()
    judged = [e for e in map(json.loads, lines) if e.get("kind") == "judge"]
    assert len(judged) == 40
    first = judged[0]
    assert first["reasoning"] == "verdict 0.0" and first["prompt_version"] == "v1"
    assert (
        first["rubric"].startswith("The summary sentence") and first["judge_model"] == "gpt-4o-mini"
    )

    # ... and land in the ClickHouse audit table, where SQL gives the same pass rates
    with AuditStore.connect(audit_url) as store:
        rows = store.query(
            f"SELECT JSONExtractString(payload, 'variant') AS v, "
            f"count() AS n, avg(JSONExtractBool(payload, 'passed')) AS rate "
            f"FROM {store.database}.audit_events WHERE task_id = {{run:String}} "
            f"AND type = 'eval_score_recorded' AND JSONExtractString(payload, 'scorer') = 'totals' "
            f"GROUP BY v ORDER BY v",
            {"run": run_id},
        ).rows
    assert rows == [("baseline", 20, 1.0), ("candidate", 20, pytest.approx(0.6))]


def _deliveries_log(home: Path) -> list[str]:
    path = home / "sandbox" / "deliveries.log"
    return path.read_text().splitlines() if path.exists() else []


def _suite(tmp_path: Path, body: dict[str, object]) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


async def test_replay_mode_runs_no_side_effecting_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    monkeypatch.setenv("DELIVERIES_MODEL_DELAY", "0")
    settings = Settings(home=tmp_path)
    from agentledger.agents.runtime import build_runtime
    from agentledger.agents.workflow import load_workflow
    from agentledger.streams.embedded import EmbeddedRunner

    log = SqliteEventLog(tmp_path / "ledger.db")
    try:
        wf = load_workflow(DELIVERIES, settings=settings)
        runtime = build_runtime(wf, settings)
        runner = EmbeddedRunner(log, runtime)
        for goal in ("deliver three parcels", "deliver them again"):
            await runner.run(await runner.submit(goal))
        recorded = _deliveries_log(tmp_path)
        assert len(recorded) == 6  # the counter: one line per real delivery

        suite = load_suite(
            _suite(
                tmp_path,
                {
                    "name": "deliveries-replay",
                    "dataset": {"tasks": {"workflow": "deliveries"}},
                    "candidate": {"workflow": str(DELIVERIES), "models": {"reporter": "v2"}},
                    "mode": "replay",
                    "repetitions": 2,
                    "scorers": [{"name": "same", "type": "exact"}],
                },
            )
        )
        run_id = await EvalRunner(suite, log, settings).run()
        assert _deliveries_log(tmp_path) == recorded  # nothing was delivered again
        events = await task_events(log, run_id)
        runs = [e for e in events if isinstance(e, EvalCaseCompleted)]
        assert len(runs) == 2 + 2 * 2  # each recorded task once, then 2 candidate runs each
        candidate = [r for r in runs if r.variant == "candidate"]
        assert all(r.status == "completed" and r.tool_calls == 3 for r in candidate)
        assert all(r.blocked_side_effects == 0 for r in runs)
        scores = [e for e in events if isinstance(e, EvalScoreRecorded)]
        assert all(s.passed for s in scores), [s.reasoning for s in scores if not s.passed]
        # the candidate's deliveries were answered from the baseline's recording
        run_events = await task_events(log, candidate[0].run_task_id)
        results = [e.result for e in run_events if e.type == "tool_call_completed"]
        assert sorted(r["parcel"] for r in results) == ["p1", "p2", "p3"]  # type: ignore[index]

        # live mode: a side-effecting tool is refused unless the suite allows it
        live = {
            "name": "deliveries-live",
            "dataset": {
                "cases": [
                    {"id": "three", "goal": "deliver three parcels", "expected": "ops@example.com"}
                ]
            },
            "baseline": {"workflow": str(DELIVERIES)},
            "candidate": {"workflow": str(DELIVERIES)},
            "scorers": [
                {"name": "done", "type": "python", "function": "json:dumps"},
                {"name": "same", "type": "exact"},
            ],
        }
        run_id = await EvalRunner(load_suite(_suite(tmp_path, live)), log, settings).run()
        assert _deliveries_log(tmp_path) == recorded
        runs = [e for e in await task_events(log, run_id) if isinstance(e, EvalCaseCompleted)]
        assert [r.blocked_side_effects for r in runs] == [3, 3]
        scores = [e for e in await task_events(log, run_id) if isinstance(e, EvalScoreRecorded)]
        # a scorer that raises gives its score an error; the eval goes on
        assert scores[0].error == (
            "json:dumps raised TypeError: dumps() takes 1 positional argument but 2 were given"
        )
        assert not scores[0].passed and scores[0].score == 0
        # the exact scorer's reasoning quotes the expected e-mail address: masked on write
        assert scores[1].reasoning.startswith("expected '[email:")
        raw = [e.model_dump_json() for e in await task_events(log, run_id)]
        assert not any("ops@example.com" in line for line in raw)

        allowed = {**live, "allow_side_effects": True}
        await EvalRunner(load_suite(_suite(tmp_path, allowed)), log, settings).run()
        assert len(_deliveries_log(tmp_path)) == 6 + 2 * 3  # the counter does count
    finally:
        await log.close()
