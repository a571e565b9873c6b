"""Eval pieces without a run: confidence intervals, the report's deltas and thresholds,
suite validation, verdict parsing and scorers on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.errors import UsageError
from agentledger.evaluation.judge import JudgeError, parse_verdict, prompt
from agentledger.evaluation.report import build_report, confidence_interval
from agentledger.evaluation.scorers import pick, score_output
from agentledger.evaluation.suite import Case, JsonSchemaScorer, load_suite
from agentledger.schemas import EvalCaseCompleted, EvalRunStarted, EvalScoreRecorded, Event


def test_confidence_interval_of_paired_differences() -> None:
    # mean 1, sd 1, n 4: t(3) = 3.182, half-width 3.182 * 1 / 2
    low, high = confidence_interval([0.0, 1.0, 2.0, 1.0])
    assert (low, high) == pytest.approx((1 - 1.2990, 1 + 1.2990), abs=1e-3)
    assert confidence_interval([0.5]) == (0.5, 0.5)
    assert confidence_interval([]) == (0.0, 0.0)


def run_events(
    base: list[tuple[str, bool, float]], cand: list[tuple[str, bool, float]], **thresholds: float
) -> list[Event]:
    """One scorer, one repetition; (case, passed, cost) per variant."""
    events: list[Event] = [
        EvalRunStarted(
            task_id="run",
            suite="s",
            mode="live",
            cases=len(base),
            repetitions=1,
            baseline="b.yaml",
            candidate="c.yaml",
            scorers=["ok"],
            thresholds=thresholds,
        )
    ]
    for variant, rows in (("baseline", base), ("candidate", cand)):
        for case, passed, cost in rows:
            common = {"case_id": case, "variant": variant, "repetition": 0, "run_task_id": "t"}
            events.append(
                EvalCaseCompleted(
                    task_id="run", status="completed", cost_usd=cost, latency_ms=100.0, **common
                )
            )
            events.append(
                EvalScoreRecorded(
                    task_id="run",
                    scorer="ok",
                    kind="exact",
                    score=float(passed),
                    passed=passed,
                    **common,
                )
            )
    return events


def test_report_deltas_and_thresholds() -> None:
    base = [("a", True, 1.0), ("b", True, 1.0), ("c", True, 1.0), ("d", False, 1.0)]
    cand = [("a", True, 1.5), ("b", False, 1.5), ("c", True, 1.5), ("d", True, 1.5)]
    report = build_report(run_events(base, cand, max_pass_rate_drop=0.0, max_cost_increase=0.4))
    assert report.pass_rate.baseline == 0.75 and report.pass_rate.candidate == 0.75
    assert report.scorers["ok"].delta == 0
    assert report.cost_usd.relative == pytest.approx(0.5)
    assert report.breaches == ["cost per run rose 50.0%; the limit is 40.0%"]
    assert [c.failing_scorers for c in report.cases] == [[], ["ok"], [], []]
    relaxed = build_report(run_events(base, cand, max_cost_increase=0.4), {"max_cost_increase": 1})
    assert relaxed.ok and "ok: no threshold crossed (max_cost_increase=1)" in relaxed.render()
    worse = build_report(
        run_events(base, [(c, False, 1.0) for c, _, _ in cand], max_score_drop=0.5)
    )
    assert worse.breaches == ["score ok dropped 0.750 (from 0.750 to 0.000); the limit is 0.5"]
    with pytest.raises(ValueError, match="not an eval run"):
        build_report(run_events(base, cand)[1:])


def test_a_suite_that_cannot_work_is_refused_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndataset: {cases: [{id: a, goal: g}]}\ncandidate: {workflow: w}\n")
    with pytest.raises(UsageError, match="scorers: Field required"):
        load_suite(path)
    path.write_text(
        "name: s\ndataset: {cases: [{id: a, goal: g}]}\ncandidate: {workflow: w}\n"
        "scorers: [{name: x, type: exact}]\n"
    )
    with pytest.raises(UsageError, match=r"needs `baseline\.workflow`"):
        load_suite(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(UsageError, match="must be a mapping"):
        load_suite(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_suite(path)
    with pytest.raises(UsageError, match="cannot read suite"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="no judge prompt version 'v9'"):
        prompt("v9", "rubric")


def test_judge_verdicts_must_be_json_with_a_score_in_range() -> None:
    assert parse_verdict('```json\n{"score": 0.5, "reasoning": "half"}\n```').score == 0.5
    for bad in ("I think it is fine", '{"score": 7}', '{"score": true}', "[]", None):
        with pytest.raises(JudgeError, match="judge's answer"):
            parse_verdict(bad)


async def test_json_schema_scorer_says_what_is_wrong() -> None:
    scorer = JsonSchemaScorer.model_validate(
        {"name": "shape", "type": "json_schema", "schema": {"type": "object", "required": ["x"]}}
    )
    case = Case(id="c", goal="g")
    result = await score_output(scorer, case, {"y": 1}, base_dir=None, judges={}, run_id="r")
    assert not result.passed and result.reasoning == "(root): 'x' is a required property"
    assert (await score_output(scorer, case, {"x": 1}, base_dir=None, judges={}, run_id="r")).passed
    assert pick({"a": [{"b": 2}]}, "a.0.b") == 2 and pick({"a": 1}, "a.b") is None
