from agentledger.llm import ScriptedModel
from agentledger.projections.task_state import TaskState, evolve, fold
from agentledger.streams import MemoryEventLog
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.testing import make_runtime, task_events
from tests.support.scripted_runs import crash_workflow, deterministic


async def test_rebuild_from_offset_zero_equals_the_incremental_state():
    log = MemoryEventLog()
    runner = EmbeddedRunner(log, make_runtime(crash_workflow(), ScriptedModel(deterministic)))
    task_id = await runner.submit("send two")
    incremental = await runner.run(task_id)  # folded event by event while the task ran
    rebuilt = fold(task_id, await task_events(log, task_id))
    assert rebuilt == incremental
    assert rebuilt.status == "completed" and rebuilt.tool_calls == 4


async def test_evolve_is_pure_and_never_mutates_the_previous_state():
    log = MemoryEventLog()
    runner = EmbeddedRunner(log, make_runtime(crash_workflow(), ScriptedModel(deterministic)))
    task_id = await runner.submit("send two")
    await runner.run(task_id)
    events = await task_events(log, task_id)
    states = [TaskState(task_id=task_id)]
    for e in events:
        states.append(evolve(states[-1], e))
    assert states[0] == TaskState(task_id=task_id)
    assert [s.last_seq for s in states] == list(range(len(events) + 1))
    assert states[len(events) // 2] == fold(task_id, events[: len(events) // 2])
