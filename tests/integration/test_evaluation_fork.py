"""fork and diff: a task continued from the middle of another, reusing what came before."""

from __future__ import annotations

import importlib
import itertools
import json
import sys
from pathlib import Path

import pytest

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.errors import UsageError
from agentledger.evaluation.diff import diff_runs
from agentledger.evaluation.fork import fork_events, safe_fork_seq
from agentledger.llm.scripted import ScriptedModel
from agentledger.settings import Settings
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.testing import run_goal, task_events
from tests.support.example_runs import EXAMPLE_GOALS, EXAMPLES, cli, record_example

pytestmark = pytest.mark.integration

PIPELINE = EXAMPLES / "pipeline" / "workflow.yaml"


def pipeline_model() -> ScriptedModel:
    sys.path.insert(0, str(PIPELINE.parent))
    try:
        respond = importlib.import_module("pipeline_model").respond
    finally:
        sys.path.remove(str(PIPELINE.parent))
    return ScriptedModel(respond)


async def test_a_fork_mid_task_reuses_upstream_outputs_without_calling_the_model(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path)
    wf = load_workflow(PIPELINE, settings=settings)
    first = pipeline_model()
    run = await run_goal(
        wf, {}, EXAMPLE_GOALS["pipeline"], runtime=build_runtime(wf, settings, models=first)
    )
    assert run.state.status == "completed" and len(first.calls) == 3
    # fork right after the extractor finished: its output is upstream, the rest runs again
    extracted = next(e for e in run.events if e.type == "subtask_completed")
    fork = fork_events(run.events, extracted.seq)
    await run.log.append(fork.events)
    second = pipeline_model()
    state = await EmbeddedRunner(run.log, build_runtime(wf, settings, models=second)).run(
        fork.task_id
    )

    assert state.status == "completed" and state.result == run.state.result
    assert [c.agent for c in second.calls] == ["normaliser", "summariser"]  # no extractor call
    events = await task_events(run.log, fork.task_id)
    ids = {e.event_id for e in events}
    assert not ids & {e.event_id for e in run.events}
    # every cause is an event of the fork itself: its copied history hangs together
    assert all(e.causation_id in ids for e in events if e.causation_id)
    forked = next(e for e in events if e.type == "task_forked")
    assert (forked.seq, forked.parent_task_id, forked.fork_seq) == (
        extracted.seq + 1,
        run.task_id,
        extracted.seq,
    )
    assert [e.type for e in events[: extracted.seq]] == [
        e.type for e in run.events[: extracted.seq]
    ]
    diff = diff_runs(run.events, events)
    assert diff.same_outputs and diff.a.llm_calls == 3 and diff.b.llm_calls == 3


async def test_the_fork_point_moves_to_the_end_of_its_reaction(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    wf = load_workflow(PIPELINE, settings=settings)
    run = await run_goal(wf, {}, EXAMPLE_GOALS["pipeline"], runtime=build_runtime(wf, settings))
    # agent_output_produced and subtask_completed... each is its own batch here; a mid-batch
    # seq in the research brief is checked below through the CLI
    for e in run.events[:-1]:
        assert safe_fork_seq(run.events, e.seq) >= e.seq
    with pytest.raises(UsageError, match="ended at seq 18"):
        fork_events(run.events, 18)
    with pytest.raises(UsageError, match="outside the task's history"):
        fork_events(run.events, 99)
    with pytest.raises(UsageError, match="has not completed by the fork point"):
        fork_events(run.events, 3, edits={"extract": {"lines": []}})
    with pytest.raises(UsageError, match="already handed to 'normalise' at seq 8"):
        fork_events(run.events, 9, edits={"extract": {"lines": []}})


def test_fork_with_an_edited_output_status_lineage_and_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    parent = record_example("pipeline")
    edit = tmp_path / "lines.json"
    edit.write_text(json.dumps({"lines": ["taxi 10 eur", "tea 2 gbp"]}))
    code, out, err = cli("fork", parent, "--at", "7", "--edit-output", f"extract={edit}")
    assert code == 0, err
    child = out.splitlines()[0].split()[1].rstrip(":")
    assert "2 expenses: 10.00 EUR, 2.00 GBP." in out
    code, out, _ = cli("status", child)
    assert code == 0 and f"forked from task {parent} at seq 7; edited output of extract" in out
    status = json.loads(cli("status", child, "--json")[1])
    assert (status["forked_from"], status["fork_seq"], status["status"]) == (parent, 7, "completed")
    assert "forked_from" not in json.loads(cli("status", parent, "--json")[1])
    code, out, _ = cli("diff", parent, child)
    assert code == 0
    assert "result:" in out and "normalise.expenses" in out
    assert "LLM calls" in out  # the figures table
    code, out, _ = cli("diff", parent, child, "--json")
    body = json.loads(out)
    assert body["same_outputs"] is False and body["figures"]["llm_calls"] == [3, 3]
    # a fork of a fork of the research brief, with a model override, on a mid-reaction seq
    brief = record_example("research_brief")
    events_out = cli("events", brief, "--json")[1].splitlines()
    batch = [json.loads(line) for line in events_out]
    mid = next(
        e["seq"]
        for e, nxt in itertools.pairwise(batch)
        if e["causation_id"] and e["causation_id"] == nxt["causation_id"]
    )
    code, out, err = cli("fork", brief, "--at", str(mid), "--model", "scripted-2")
    assert code == 0, err
    assert f"fork point moved from seq {mid} to" in err
    assert cli("fork", brief, "--at", "2", "--model", "nobody=x")[0] == 2
    assert cli("fork", brief, "--at", "2", "--edit-output", "x")[0] == 2
    fork_id = out.splitlines()[0].split()[1].rstrip(":")
    code, out, err = cli("verify", fork_id)
    assert code == 0, err
