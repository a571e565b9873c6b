from pathlib import Path

import pytest

from agentledger.agents.graph import AgentGraph, Edge, dag_problems
from agentledger.agents.workflow import AgentSpec, Workflow, load_workflow
from agentledger.errors import WorkflowError


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


VALID = """
name: demo
orchestrator: planner
agents:
  planner: {routes_to: [worker, checker]}
  worker: {routes_to: [checker]}
  checker: {routes_to: [{to: worker, loop: true}]}
"""


def test_valid_workflow_file_loads(tmp_path: Path):
    wf = load_workflow(write(tmp_path, VALID))
    assert wf.name == "demo"
    assert wf.graph.allows("planner", "worker")
    assert not wf.graph.allows("worker", "planner")
    assert len(wf.digest) == 16
    assert wf.agents["worker"].max_iterations == 15
    assert wf.agents["worker"].warn_iterations == 10


def test_toml_workflow_loads(tmp_path: Path):
    text = 'name = "t"\norchestrator = "p"\n[agents.p]\nroutes_to = ["w"]\n[agents.w]\n'
    assert load_workflow(write(tmp_path, text, "wf.toml")).agents.keys() == {"p", "w"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "name: x\norchestrator: p\nagents:\n  p: {routes_to: [ghost]}\n",
            "dangling edge to unknown agent 'ghost'",
        ),
        ("name: x\norchestrator: boss\nagents:\n  p: {}\n", "entry agent 'boss' is not declared"),
        (
            "name: x\norchestrator: p\nagents:\n  p: {routes_to: [a]}\n  a: {}\n  lonely: {}\n",
            "'lonely' is unreachable",
        ),
        (
            "name: x\norchestrator: p\nagents:\n  p: {routes_to: [a]}\n  a: {routes_to: [b]}\n  b: {routes_to: [a]}\n",
            "cycle a -> b -> a is not declared as a loop",
        ),
        (
            "name: x\norchestrator: p\nagents:\n  p: {routes_to: [a]}\n  a: {tools: [nope]}\n",
            "tool 'nope', which is not registered",
        ),
        (
            "name: x\norchestrator: p\nagents:\n  p: {colour: red}\n",
            "agents.p.colour: Extra inputs are not permitted",
        ),
        (
            "name: x\norchestrator: p\nagents:\n  p: {output: 'nosuchmodule_xyz:Thing'}\n",
            "cannot import 'nosuchmodule_xyz'",
        ),
        (
            "name: x\norchestrator: p\nagents:\n  p: {max_iterations: 3, warn_iterations: 5}\n",
            "warn_iterations (5) is above",
        ),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("orchestrator: p\nagents: {p: {}}\n", "name: Field required"),
    ],
)
def test_invalid_workflows_are_refused_with_the_reason(tmp_path: Path, text: str, problem: str):
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, text))
    assert problem in str(info.value)
    assert str(tmp_path / "wf.yaml") in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path):
    text = "name: x\norchestrator: p\nagents:\n  p: {routes_to: [ghost, a]}\n  a: {tools: [nope]}\n"
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, text))
    assert len(info.value.problems) == 2


def test_missing_file_is_a_workflow_error(tmp_path: Path):
    with pytest.raises(WorkflowError, match="cannot read the file"):
        load_workflow(tmp_path / "absent.yaml")


def test_workflow_declared_in_python_is_validated():
    with pytest.raises(WorkflowError, match="unreachable"):
        Workflow.build(name="x", orchestrator="p", agents=[AgentSpec("p"), AgentSpec("q")])
    wf = Workflow.build(
        name="x", orchestrator="p", agents=[AgentSpec("p", routes_to=("q",)), AgentSpec("q")]
    )
    assert wf.graph.targets("p") == ["q"]


def test_loop_edges_allow_declared_cycles_only():
    graph = AgentGraph(["a", "b"], [Edge("a", "b"), Edge("b", "a", loop=True)], "a")
    assert graph.problems() == []
    graph = AgentGraph(["a", "b"], [Edge("a", "b"), Edge("b", "a")], "a")
    assert "not declared as a loop" in graph.problems()[0]


def test_plan_dependency_problems():
    assert dag_problems({"a": [], "b": ["a"]}) == []
    assert dag_problems({"a": ["zz"]}) == ["'a' depends on 'zz', which is not in the plan"]
    assert "dependency cycle" in dag_problems({"a": ["b"], "b": ["a"]})[0]
