"""Workflow files for the peer-to-peer and swarm patterns: what loads, what is refused and
why; and the oscillation rule on its own."""

import itertools
from pathlib import Path

import pytest

from agentledger.agents.handoffs import oscillation, with_handoff
from agentledger.agents.workflow import load_workflow
from agentledger.errors import WorkflowError
from agentledger.projections.handoffs import Hop

CONTRACTS = """
from pydantic import BaseModel

class Note(BaseModel):
    text: str

class Claims(BaseModel):
    text: str
    handoff: str = ""
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "contracts.py").write_text(CONTRACTS)
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


P2P = """
name: desk
pattern: peer_to_peer
entry: a
agents:
  a: {output: "contracts:Note", routes_to: [b]}
  b: {output: "contracts:Note", routes_to: [{to: a, loop: true}]}
limits: {max_handoffs: 5, oscillation_cycles: 3}
"""


def test_a_peer_to_peer_workflow_loads_without_an_orchestrator(tmp_path: Path):
    wf = load_workflow(write(tmp_path, P2P))
    assert (wf.pattern, wf.entry, wf.orchestrator) == ("peer_to_peer", "a", "")
    assert wf.graph.entry == "a"
    assert (wf.limits.max_handoffs, wf.limits.oscillation_cycles) == (5, 3)
    assert wf.limits.max_handoff_rejections == 2


def test_peer_to_peer_defaults(tmp_path: Path):
    wf = load_workflow(
        write(tmp_path, P2P.replace("limits: {max_handoffs: 5, oscillation_cycles: 3}", ""))
    )
    assert (
        wf.limits.max_handoffs,
        wf.limits.oscillation_cycles,
        wf.limits.max_handoff_rejections,
    ) == (20, 2, 2)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (P2P.replace("entry: a", "orchestrator: a"), "a peer_to_peer workflow has no orchestrator"),
        (P2P.replace("entry: a\n", ""), "a peer_to_peer workflow needs `entry`"),
        (P2P.replace("pattern: peer_to_peer\n", ""), "`orchestrator` is required"),
        (P2P.replace("entry: a", "entry: ghost"), "entry agent 'ghost' is not declared"),
        (
            P2P.replace('a: {output: "contracts:Note", ', "a: {"),
            "agent 'a' hands work on in a peer_to_peer workflow, so it needs `output`",
        ),
        (
            P2P.replace('a: {output: "contracts:Note"', 'a: {output: "contracts:Claims"'),
            "output model of 'a' has a field 'handoff', which peer_to_peer workflows reserve",
        ),
        (
            P2P.replace("{to: a, loop: true}", "a"),
            "cycle a -> b -> a is not declared as a loop",
        ),
    ],
)
def test_bad_peer_to_peer_workflows_say_why(tmp_path: Path, text: str, problem: str):
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, text))
    assert problem in str(info.value)


SWARM = """
name: swarm
orchestrator: p
agents:
  p: {routes_to: [s, agg]}
  s: {output: "contracts:Note", routes_to: [agg]}
  agg: {aggregate: AGG}
"""


@pytest.mark.parametrize(
    ("aggregate", "problem"),
    [
        ("{method: majority_vote}", "aggregate method 'majority_vote' needs `field`"),
        ("{method: score_average}", "aggregate method 'score_average' needs `field`"),
        ("{method: best_of}", "agents.agg.aggregate.method"),
        (
            '{method: judge}, output: "contracts:Note"',
            "agent 'agg' aggregates, so it must not declare `output`",
        ),
    ],
)
def test_bad_aggregators_say_why(tmp_path: Path, aggregate: str, problem: str):
    text = SWARM.replace("{aggregate: AGG}", "{aggregate: " + aggregate + "}")
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, text))
    assert problem in str(info.value)


def test_an_aggregator_in_a_peer_to_peer_workflow_is_refused(tmp_path: Path):
    text = P2P.replace("routes_to: [b]}", "routes_to: [b, c]}\n  c: {aggregate: {method: judge}}")
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, text))
    assert "agent 'c': aggregate needs a planned subtask" in str(info.value)


def test_the_handoff_field_extends_the_contract_under_the_same_name(tmp_path: Path):
    wf = load_workflow(write(tmp_path, P2P))
    note = wf.agents["a"].output_model
    assert note is not None
    extended = with_handoff(note)
    assert extended is with_handoff(note)  # one class per contract
    assert extended.__name__ == "Note"
    assert extended.model_validate({"text": "x"}).model_dump() == {"text": "x", "handoff": None}
    assert extended.model_validate({"text": "x", "handoff": {"to": "b"}}).model_dump() == {
        "text": "x",
        "handoff": {"to": "b", "note": ""},
    }


def hops(*path: str) -> list[Hop]:
    return [Hop(a, b) for a, b in itertools.pairwise(path)]


@pytest.mark.parametrize(
    ("path", "cycles", "found"),
    [
        (("a", "b", "a", "b", "a"), 2, ["a", "b", "a", "b", "a"]),
        (("a", "b", "a", "b"), 2, None),  # one and a half cycles
        (("t", "a", "b", "a", "b"), 2, None),  # the window starts with another pair
        (("t", "a", "b", "a", "b", "a"), 2, ["a", "b", "a", "b", "a"]),
        (("a", "b", "c", "a", "b", "c", "a"), 2, None),  # longer cycles: the hop cap
        (("a", "b", "a"), 1, ["a", "b", "a"]),
        (("a", "b", "a", "b", "a"), 3, None),
    ],
)
def test_oscillation_is_one_pair_bouncing_the_configured_number_of_full_cycles(
    path: tuple[str, ...], cycles: int, found: list[str] | None
):
    assert oscillation(hops(*path), cycles) == found
