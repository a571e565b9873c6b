"""Property: corrupt one random record of a random unfinished task (a crash at any point),
then resume. Never a crash, never a side effect executed twice, and the task either
completes or is quarantined with a message naming the record."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.errors import QuarantinedTaskError
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, reply, reply_json
from agentledger.schemas import Event, RecordedToolCall
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime, run_goal, task_events
from agentledger.tools import ToolContext, tool

EXECUTIONS: list[str] = []


@tool(side_effect=True, risk="write")
def ship(to: str, ctx: ToolContext) -> dict[str, str]:
    """Ship a parcel (a side effect: the test counts executions)."""
    EXECUTIONS.append(ctx.idempotency_key)
    return {"shipped_to": to}


WORKFLOW = Workflow.build(
    name="shipping",
    orchestrator="planner",
    agents=[AgentSpec("planner", routes_to=("shipper",)), AgentSpec("shipper", tools=("ship",))],
    tools=[ship],
)


def respond(r: ModelRequest) -> ModelResponse:
    if r.agent == "planner":
        return reply_json({"subtasks": [{"id": f"s{i}", "agent": "shipper"} for i in (1, 2)]})
    if r.iteration == 1:
        call = RecordedToolCall(call_id=f"{r.subtask_id}-ship", tool="ship", arguments={"to": "x"})
        return ModelResponse(model="scripted", tool_calls=[call], finish_reason="tool_calls")
    return reply(f"{r.subtask_id} shipped")


HISTORY: list[Event] = asyncio.run(run_goal(WORKFLOW, ScriptedModel(respond), "ship two")).events
TASK = HISTORY[0].task_id
# A crash falls between two appended batches (a reaction's output is one atomic append):
# the points where the cause changes, short of the event that ends the task.
CRASH_POINTS = [
    cut
    for cut in range(1, len(HISTORY) - 1)
    if HISTORY[cut].causation_id != HISTORY[cut - 1].causation_id
]

CORRUPTIONS = {
    "bad_json": ("data", b'{"type": "'),
    "text_data": ("data", "CAST(data AS TEXT)"),
    "unknown_type": ("data", b'{"type": "teleported"}'),
    "invalid_fields": ("data", None),  # filled in per row: the right type, a wrong field
    "seq_in_row": ("seq", "seq + 100"),
    "occurred_at": ("occurred_at", "'not a time'"),
    "type_column": ("type", "'mystery'"),
    "truncated": ("data", "substr(data, 1, length(data) / 2)"),
}


def corrupt(db_path: Path, offset: int, kind: str) -> None:
    column, value = CORRUPTIONS[kind]
    db = sqlite3.connect(db_path)
    try:
        if kind == "invalid_fields":
            (event_type,) = db.execute(
                "SELECT type FROM events WHERE offset = ?", (offset,)
            ).fetchone()
            value = f'{{"type": "{event_type}", "seq": "many"}}'.encode()
        if isinstance(value, bytes):
            db.execute(f"UPDATE events SET {column} = ? WHERE offset = ?", (value, offset))
        else:
            db.execute(f"UPDATE events SET {column} = {value} WHERE offset = ?", (offset,))
        db.commit()
    finally:
        db.close()


async def resume_corrupted(cut: int, row: int, kind: str) -> tuple[str, list[Event]]:
    path = Path(tempfile.mkdtemp(prefix="corrupt-")) / "ledger.db"
    log = SqliteEventLog(path, synchronous="NORMAL")
    try:
        recorded = await log.append(HISTORY[:cut])
        corrupt(path, recorded[row].offset, kind)
        runner = EmbeddedRunner(log, make_runtime(WORKFLOW, ScriptedModel(respond)))
        try:
            state = await runner.run(TASK)
        except QuarantinedTaskError as exc:
            quarantined = exc
        else:
            assert state.status == "completed", state.failure
            return "completed", await task_events(log, TASK)
        assert f"task {TASK} is quarantined: its record at offset " in str(quarantined)
        assert quarantined.offset == recorded[row].offset
        return "quarantined", await task_events(log, TASK)
    finally:
        await log.close()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(CORRUPTIONS)))
def test_one_corrupt_record_never_crashes_resume_nor_repeats_a_side_effect(
    data: st.DataObject, kind: str
) -> None:
    cut = data.draw(st.sampled_from(CRASH_POINTS), label="events kept")
    row = data.draw(st.integers(min_value=0, max_value=cut - 1), label="record corrupted")
    EXECUTIONS.clear()
    outcome, events = asyncio.run(resume_corrupted(cut, row, kind))
    started = {e.idempotency_key for e in HISTORY[:cut] if e.type == "tool_call_started"}
    assert not started & set(EXECUTIONS), "a side effect started before the crash ran again"
    assert len(EXECUTIONS) == len(set(EXECUTIONS)), "a side effect ran twice"
    if outcome == "quarantined":
        assert EXECUTIONS == [] and len(events) < cut  # nothing was driven or written
    else:
        assert kind in ("occurred_at", "type_column")  # only the index columns were touched
        assert events[-1].type == "task_completed"
