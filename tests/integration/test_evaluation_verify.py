"""verify: recorded runs of the examples re-run with today's code; divergences pinpointed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import load_workflow
from agentledger.evaluation.verify import verify_events
from agentledger.llm.base import ModelRequest, ModelResponse
from agentledger.llm.scripted import ScriptedModel
from agentledger.settings import Settings
from agentledger.testing import run_goal
from tests.support.example_runs import EXAMPLE_GOALS, EXAMPLES, cli, record_example

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("example", sorted(EXAMPLE_GOALS))
def test_recorded_runs_of_the_examples_verify(home: Path, example: str) -> None:
    task_id = record_example(example)
    code, out, err = cli("verify", task_id)
    assert code == 0, err
    assert f"task {task_id}: ok" in out
    reactions = int(out.split("ok — ")[1].split()[0])
    assert reactions >= 10  # every reaction of the run was re-run, not a few
    # the scripted models are code under test too: asking them again gives the same
    code, out, err = cli("verify", task_id, "--rerun-models")
    assert code == 0, err


def test_verify_since_checks_every_recent_task(home: Path) -> None:
    first, second = record_example("pipeline"), record_example("swarm")
    code, out, err = cli("verify", "--since", "2000-01-01")
    assert code == 0, err
    assert first in out and second in out and "2 of 2 tasks verified" in out
    assert cli("verify", "--since", "2999-01-01")[1].startswith("no task ran since")
    assert cli("verify")[0] == 2 and cli("verify", "--since", "yesterday")[0] == 2
    # a task whose workflow file is gone is reported, and the others are still verified
    gone = home / "gone"
    shutil.copytree(EXAMPLES / "pipeline", gone)
    orphan = record_example("pipeline", gone / "workflow.yaml")
    shutil.rmtree(gone)
    code, out, err = cli("verify", "--since", "2000-01-01")
    assert code == 1
    assert f"task {orphan}: cannot verify:" in err and "2 of 3 tasks verified" in out
    assert cli("verify", orphan)[0] == 2  # alone: the missing file is bad input, exit 2


def test_a_changed_workflow_is_pinpointed(home: Path) -> None:
    task_id = record_example("pipeline")
    changed = home / "changed"
    shutil.copytree(EXAMPLES / "pipeline", changed)
    text = (changed / "workflow.yaml").read_text()
    text = text.replace("The item (lower case)", "the item (UPPER case)").replace(
        "For each line give the item (lower case)", "For each line give the item (UPPER CASE)"
    )
    (changed / "workflow.yaml").write_text(text)
    code, _, err = cli("verify", task_id, "--workflow", str(changed / "workflow.yaml"))
    assert code == 1
    # the first reaction that differs: the normaliser's model call, whose prompt changed
    assert (
        "the reaction to seq 9 agent_step_started (agent=normaliser, subtask_id=normalise)" in err
    )
    assert "recorded: seq 10 llm_call_completed" in err
    assert "request_digest: recorded" in err


async def test_a_changed_scripted_model_is_pinpointed(tmp_path: Path) -> None:
    wf = load_workflow(EXAMPLES / "pipeline" / "workflow.yaml", settings=Settings(home=tmp_path))
    original = build_runtime(wf, Settings(home=tmp_path))
    run = await run_goal(wf, {}, EXAMPLE_GOALS["pipeline"], runtime=original)
    assert run.state.status == "completed"
    assert (await verify_events(run.events, original, rerun_models=True)).ok

    scripted = original.models["summariser"]

    async def sloppier(request: ModelRequest) -> ModelResponse:
        response = await scripted.complete(request)
        if request.agent == "summariser":  # the deliberate change: a different sentence
            content = (response.content or "").replace("4 expenses", "four expenses")
            return response.model_copy(update={"content": content})
        return response

    changed = build_runtime(wf, Settings(home=tmp_path), models=ScriptedModel(sloppier))
    result = await verify_events(run.events, changed, rerun_models=True)
    assert not result.ok and result.divergence is not None
    d = result.divergence
    assert (d.cause.type, d.cause.agent, d.cause.seq) == ("agent_step_started", "summariser", 14)
    assert d.recorded is not None and d.recorded.seq == 15
    assert d.fields[0].path == "content"
    assert "four expenses" in str(d.fields[0].replayed) and "4 expenses" in str(
        d.fields[0].recorded
    )
    # answered from the recording, the model change is invisible: the code is unchanged
    assert (await verify_events(run.events, changed)).ok


APPROVALS = Path(__file__).parents[1] / "fixtures" / "approvals" / "workflow.yaml"


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_a_task_decided_by_a_person_verifies(home: Path, decision: str) -> None:
    """Decisions come from outside the processors and deadlines from the clock: the
    reactions to them are re-run, the decisions and the instants themselves are not."""
    code, out, err = cli("run", str(APPROVALS), "--goal", "nightly maintenance")
    assert code == 3, err  # waiting for a person
    task_id = out.splitlines()[0].split()[1]
    approval_id = next(w for w in out.split() if w.startswith("ap-"))
    code, out, err = cli("verify", task_id)  # unfinished: what it did so far is the same
    assert code == 0 and f"task {task_id}: ok" in out, err
    extra = ["--reason", "not tonight"] if decision == "deny" else []
    code, _, err = cli(decision, approval_id, *extra)
    assert code == (0 if decision == "approve" else 1), err  # a denial fails the task
    code, out, err = cli("verify", task_id)
    assert code == 0, err
    assert f"task {task_id}: ok" in out
