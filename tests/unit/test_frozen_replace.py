import dataclasses

import pytest

from agentledger.projections.frozen import replace
from agentledger.projections.task_state import SubtaskState, TaskState


def test_replace_gives_what_dataclasses_replace_gives():
    state = TaskState(task_id="t", goal="g", subtasks={"a": SubtaskState(id="a", agent="x")})
    for changes in ({}, {"last_seq": 4}, {"status": "running", "goal": "h", "warnings": ("w",)}):
        copy = replace(state, **changes)
        assert copy == dataclasses.replace(state, **changes)
        assert copy is not state
    sub = state.subtasks["a"]
    assert replace(sub, iteration=2, turns=()) == dataclasses.replace(sub, iteration=2, turns=())
    assert state.last_seq == 0 and state.status == "new"  # the original is untouched


def test_replace_refuses_a_name_that_is_not_a_field():
    with pytest.raises(TypeError, match="no field 'nope'"):
        replace(TaskState(task_id="t"), nope=1)


def test_replace_refuses_classes_it_cannot_copy_exactly():
    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="slotted"):
        replace(Unslotted(1), a=2)
    with pytest.raises(TypeError, match="init fields"):
        replace(Derived(1), a=2)
