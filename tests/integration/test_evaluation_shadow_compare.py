"""shadow compare without a broker: any two logs holding the same task ids (a disagreement
fails the comparison)."""

from __future__ import annotations

from pathlib import Path

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.evaluation.report import build_report
from agentledger.evaluation.shadow import compare_shadow
from agentledger.settings import Settings
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.memory import MemoryEventLog
from agentledger.testing import task_events
from tests.support.example_runs import EXAMPLES


async def test_shadow_compare_records_an_eval_run_and_flags_disagreement(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    primary, shadow, ledger = MemoryEventLog(), MemoryEventLog(), MemoryEventLog()
    goals = {
        "t-cents": "Summarise these expenses: coffee 3.40 eur; croissant 2.15 eur",
        "t-whole": "Summarise these expenses: hotel 120 eur",
    }
    # the primary runs both goals with the pipeline; the shadow runs one with the same
    # workflow and one with the terse candidate, whose rounded totals disagree
    plan = [
        (primary, "workflow.yaml", "t-cents"),
        (primary, "workflow.yaml", "t-whole"),
        (shadow, "workflow_terse.yaml", "t-cents"),
        (shadow, "workflow.yaml", "t-whole"),
    ]
    for log, name, task_id in plan:
        wf = load_workflow(EXAMPLES / "pipeline" / name, settings=settings)
        runner = EmbeddedRunner(log, build_runtime(wf, settings))
        await runner.run(await runner.submit(goals[task_id], task_id=task_id))
    run_id = await compare_shadow(
        primary,
        shadow,
        ledger,
        task_ids=[*goals, "t-missing"],
        primary_name="live",
        shadow_name="live-shadow",
        thresholds={"max_pass_rate_drop": 0.0},
    )
    report = build_report(await task_events(ledger, run_id))
    assert report.mode == "shadow" and report.runs == {"baseline": 2, "candidate": 2}
    by_case = {c.case_id: c for c in report.cases}
    assert by_case["t-whole"].pass_rate.candidate == 1.0  # the same answer
    assert by_case["t-cents"].pass_rate.candidate == 0.0  # 5.55 EUR rounded to 6
    assert by_case["t-cents"].failing_scorers == ["same_output"]
    assert report.breaches == ["pass rate dropped 50.0% (from 100.0% to 50.0%); the limit is 0.0%"]
