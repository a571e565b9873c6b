"""The flagship example, examples/research_brief, run end to end through the public API.

Real components throughout: the workflow file as users load it, the runtime built from
its model settings (the offline model named in the file), a SQLite ledger, the real
search over the example's corpus and the real save into a sandbox directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentledger.agents.context import Runtime
from agentledger.agents.runtime import build_runtime
from agentledger.agents.workflow import Workflow, load_workflow
from agentledger.errors import ModelError
from agentledger.llm import Message, ModelRequest, ScriptedModel
from agentledger.projections.task_state import TaskState
from agentledger.schemas import Event, SubtaskAssigned, ToolCallCompleted, ToolCallRequested
from agentledger.settings import Settings
from agentledger.streams import Recorded, SqliteEventLog
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.tools import ToolContext

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "research_brief"
CORPUS = {p.name: p.read_text(encoding="utf-8") for p in (EXAMPLE / "corpus").glob("*.md")}
GOAL = (
    "Write a research brief on running LLM agents reliably in production: "
    "idempotency, retries, cost control and auditability."
)


@dataclass
class Run:
    task_id: str
    state: TaskState
    events: list[Event]
    runtime: Runtime

    def of_type(self, event_type: str, subtask_id: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e.type == event_type
            and (subtask_id is None or getattr(e, "subtask_id", None) == subtask_id)
        ]

    @property
    def result(self) -> Any:
        """The task's result: the reviewer's Review, as JSON."""
        assert isinstance(self.state.result, dict)
        return self.state.result

    def output(self, subtask_id: str) -> Any:
        return self.state.subtasks[subtask_id].output

    def subtasks_of(self, agent: str) -> list[str]:
        assert self.state.plan is not None
        return [s.id for s in self.state.plan.subtasks if s.agent == agent]

    def requests_of(self, agent: str) -> list[ModelRequest]:
        model = self.runtime.models[agent]
        assert isinstance(model, ScriptedModel)
        return [r for r in model.calls if r.agent == agent]


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    return load_workflow(EXAMPLE / "workflow.yaml", settings=Settings(home=tmp_path))


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteEventLog]:
    log = SqliteEventLog(tmp_path / "ledger.db")
    yield log
    await log.close()


async def run_example(
    workflow: Workflow, ledger: SqliteEventLog, sandbox: Path, goal: str = GOAL
) -> Run:
    # The models come from the file's `model:` block (provider scripted, brief_model:respond).
    runtime = build_runtime(workflow, Settings(home=sandbox.parent, sandbox=sandbox))
    runner = EmbeddedRunner(ledger, runtime)
    task_id = await runner.submit(goal)
    try:
        state = await asyncio.wait_for(runner.run(task_id), timeout=60)
    finally:
        await runtime.aclose()
    events = [e.event for e in await ledger.read_task(task_id) if isinstance(e, Recorded)]
    return Run(task_id, state, events, runtime)


@pytest.fixture
async def run(workflow: Workflow, ledger: SqliteEventLog, tmp_path: Path) -> Run:
    return await run_example(workflow, ledger, tmp_path / "sandbox")


def test_the_workflow_file_declares_the_documented_graph(workflow: Workflow) -> None:
    assert workflow.name == "research-brief"
    assert workflow.orchestrator == "planner"
    assert workflow.agent("planner").routes_to == ("researcher", "writer", "reviewer")
    assert workflow.agent("researcher").tools == ("search_notes",)
    assert workflow.agent("reviewer").tools == ("save_brief",)
    save = workflow.tools.get("save_brief")
    search = workflow.tools.get("search_notes")
    assert save is not None
    assert save.side_effect
    assert save.risk == "write"
    assert search is not None
    assert not search.side_effect
    assert search.risk == "read"
    for name, spec in workflow.agents.items():
        assert spec.description, name
        assert spec.instructions, name
        assert spec.model.provider == "scripted"
        assert spec.model.script == "brief_model:respond"


async def test_the_task_completes_with_an_approved_brief(run: Run) -> None:
    assert run.state.status == "completed", run.state.failure
    assert run.subtasks_of("researcher") == ["practices", "risks"]
    assert run.subtasks_of("writer") == ["write"]
    assert run.subtasks_of("reviewer") == ["review"]
    result = run.result
    assert result["approved"] is True
    assert result["issues"] == []
    markdown = result["brief_markdown"]
    assert markdown.startswith("# Running LLM agents reliably in production")
    for heading in ("## Summary", "## Mechanisms and practices", "## Risks and failure modes"):
        assert f"\n{heading}\n" in markdown
    assert "## Sources\n\n1. " in markdown


async def test_the_two_researchers_run_in_parallel(run: Run) -> None:
    researchers = set(run.subtasks_of("researcher"))
    assert len(researchers) == 2
    types = [(e.type, getattr(e, "subtask_id", None)) for e in run.events]
    first_completed = min(
        i for i, (t, sid) in enumerate(types) if t == "subtask_completed" and sid in researchers
    )
    started_before = {
        sid
        for t, sid in types[:first_completed]
        if t == "agent_step_started" and sid in researchers
    }
    assert started_before == researchers


async def test_one_researcher_subtask_runs_the_expected_steps(run: Run) -> None:
    sid = run.subtasks_of("researcher")[0]
    assert [e.type for e in run.events if getattr(e, "subtask_id", None) == sid] == [
        "subtask_assigned",
        "agent_step_started",
        "llm_call_completed",
        "tool_call_requested",
        "tool_call_completed",
        "agent_step_started",
        "llm_call_completed",
        "agent_output_produced",
        "subtask_completed",
    ]


async def test_each_researcher_searches_once_and_cites_the_corpus(run: Run) -> None:
    cited: set[str] = set()
    for sid in run.subtasks_of("researcher"):
        requested = run.of_type("tool_call_requested", sid)
        assert [e.tool for e in requested if isinstance(e, ToolCallRequested)] == ["search_notes"]
        completed = run.of_type("tool_call_completed", sid)
        assert len(completed) == 1
        assert isinstance(completed[0], ToolCallCompleted)
        search: Any = completed[0].result
        returned = {hit["source"] for hit in search["results"]}

        findings = run.output(sid)
        assert findings["sources"], sid
        assert set(findings["sources"]) <= set(CORPUS)
        assert set(findings["sources"]) <= returned  # cites only what the search returned
        for point in findings["key_points"]:
            # Every point is a sentence of the note it cites, not an invention.
            note = " ".join(CORPUS[point["source"]].split())
            assert point["point"] in note, point
        cited |= set(findings["sources"])
    assert len(cited) >= 3


async def test_the_writer_receives_exactly_its_declared_inputs(run: Run) -> None:
    researchers = run.subtasks_of("researcher")
    (assigned,) = run.of_type("subtask_assigned", "write")
    assert isinstance(assigned, SubtaskAssigned)
    expected = {sid: run.output(sid) for sid in researchers}
    assert assigned.depends_on == researchers
    assert assigned.inputs == expected

    (request,) = run.requests_of("writer")
    user_prompt = request.messages[1].content or ""
    data = orjson.loads(user_prompt.removeprefix("<data>").removesuffix("</data>"))
    assert data["inputs"] == expected
    assert "review" not in data["inputs"]
    assert [m.role for m in request.messages] == ["system", "user"]


async def test_the_reviewer_saves_the_brief_in_the_sandbox(run: Run, tmp_path: Path) -> None:
    result = run.result
    saved = tmp_path / "sandbox" / "briefs" / f"{run.task_id}.md"
    assert result["saved_to"] == str(saved)
    assert saved.read_text(encoding="utf-8") == result["brief_markdown"]
    (call,) = run.of_type("tool_call_completed", "review")
    assert isinstance(call, ToolCallCompleted)
    assert call.tool == "save_brief"
    assert call.result == {
        "path": str(saved),
        "bytes": len(result["brief_markdown"].encode()),
        "idempotency_key": call.idempotency_key,
        "already_saved": False,
    }
    # A side effect: the executor wrote its durable start marker before running it.
    assert [e.type for e in run.events if getattr(e, "subtask_id", None) == "review"][3:6] == [
        "tool_call_requested",
        "tool_call_started",
        "tool_call_completed",
    ]


async def test_the_brief_is_deterministic(
    run: Run, workflow: Workflow, ledger: SqliteEventLog, tmp_path: Path
) -> None:
    again = await run_example(workflow, ledger, tmp_path / "sandbox")
    assert again.task_id != run.task_id
    assert again.state.status == "completed"
    assert again.result == {
        **run.result,
        "saved_to": str(tmp_path / "sandbox" / "briefs" / f"{again.task_id}.md"),
    }


async def test_a_goal_the_notes_do_not_cover_fails_clearly(
    workflow: Workflow, ledger: SqliteEventLog, tmp_path: Path
) -> None:
    run = await run_example(
        workflow, ledger, tmp_path / "sandbox", "Write a research brief on baking sourdough bread."
    )
    assert run.state.status == "failed"
    assert "does not invent findings" in (run.state.failure or "")
    assert run.of_type("llm_call_failed")
    assert not (tmp_path / "sandbox" / "briefs").exists()


async def test_save_brief_runs_once_per_idempotency_key(workflow: Workflow, tmp_path: Path) -> None:
    save = workflow.tools.get("save_brief")
    assert save is not None

    def ctx(key: str) -> ToolContext:
        return ToolContext("task-1", "review", "reviewer", "call-1", key, tmp_path)

    first: Any = await save.run({"markdown": "# One\n"}, ctx("key-a"))
    again: Any = await save.run({"markdown": "# Two\n"}, ctx("key-a"))
    assert first["already_saved"] is False
    assert again["already_saved"] is True
    assert again["path"] == first["path"]
    written = await asyncio.to_thread(Path(first["path"]).read_text)
    assert written == "# One\n"  # the repeat wrote nothing


async def test_the_offline_model_refuses_what_it_was_not_written_for(
    workflow: Workflow, tmp_path: Path
) -> None:
    runtime = build_runtime(workflow, Settings(home=tmp_path))
    request = ModelRequest(
        task_id="t", subtask_id="s", agent="critic", iteration=1, model="scripted", messages=[]
    )
    with pytest.raises(ModelError, match="no rule for agent 'critic'"):
        await runtime.models["planner"].complete(request)


async def test_after_feedback_the_offline_model_answers_again_without_searching_again(
    run: Run,
) -> None:
    # Replay the first researcher's real conversation, plus a rejected answer and feedback.
    sid = run.subtasks_of("researcher")[0]
    (second,) = [
        r for r in run.requests_of("researcher") if r.subtask_id == sid and r.iteration == 2
    ]
    assert second.messages[-1].role == "tool"
    rejected = [
        *second.messages,
        Message(role="assistant", content="not json"),
        Message(role="user", content="Your answer did not match the required output: ..."),
    ]
    request = second.model_copy(update={"iteration": 3, "messages": rejected})
    response = await run.runtime.models["researcher"].complete(request)
    assert response.tool_calls == []
    assert orjson.loads(response.content or "") == run.output(sid)
