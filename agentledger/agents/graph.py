"""The static agent graph: which agent may hand work to which, declared up front.

Validation refuses unknown agents, dangling edges, agents unreachable from the entry
agent, and cycles unless at least one edge of each cycle is declared as a loop (the graph
without its loop edges must be acyclic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    loop: bool = False


class AgentGraph:
    def __init__(self, agents: Iterable[str], edges: Iterable[Edge], entry: str) -> None:
        self.agents = tuple(agents)
        self.edges = tuple(edges)
        self.entry = entry
        self._out: dict[str, set[str]] = {a: set() for a in self.agents}
        for e in self.edges:
            self._out.setdefault(e.source, set()).add(e.target)

    def allows(self, source: str, target: str) -> bool:
        """Whether ``source`` may hand work to ``target``."""
        return target in self._out.get(source, ())

    def targets(self, source: str) -> list[str]:
        return sorted(self._out.get(source, ()))

    def problems(self) -> list[str]:
        """Everything wrong with the graph, as sentences (empty when valid)."""
        problems: list[str] = []
        known = set(self.agents)
        if self.entry not in known:
            problems.append(f"entry agent {self.entry!r} is not declared among the agents")
        for e in self.edges:
            if e.source not in known:
                problems.append(f"edge {e.source} -> {e.target}: unknown agent {e.source!r}")
            if e.target not in known:
                problems.append(
                    f"edge {e.source} -> {e.target}: dangling edge to unknown agent {e.target!r}"
                )
        if self.entry not in known:
            return problems
        reached = {self.entry}
        frontier = [self.entry]
        while frontier:
            for nxt in self._out.get(frontier.pop(), ()):
                if nxt not in reached:
                    reached.add(nxt)
                    frontier.append(nxt)
        for agent in self.agents:
            if agent not in reached:
                problems.append(
                    f"agent {agent!r} is unreachable from {self.entry!r}: add a route to it"
                )
        cycle = _find_cycle(
            {a: [e.target for e in self.edges if e.source == a and not e.loop] for a in self.agents}
        )
        if cycle:
            problems.append(
                "cycle " + " -> ".join(cycle) + " is not declared as a loop: mark one of its "
                "routes `loop: true` (and rely on the iteration caps) or remove it"
            )
        return problems


def _find_cycle(out: Mapping[str, list[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(out, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for nxt in sorted(out.get(node, ())):
            if color.get(nxt, white) == grey:
                return [*stack[stack.index(nxt) :], nxt]
            if color.get(nxt, white) == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(out):
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def dag_problems(nodes: Mapping[str, Iterable[str]]) -> list[str]:
    """Problems of a dependency map ``{node: depends_on}``: missing nodes, cycles."""
    problems = []
    for node, deps in nodes.items():
        for dep in deps:
            if dep not in nodes:
                problems.append(f"{node!r} depends on {dep!r}, which is not in the plan")
            if dep == node:
                problems.append(f"{node!r} depends on itself")
    if not problems:
        cycle = _find_cycle({n: list(d) for n, d in nodes.items()})
        if cycle:
            problems.append("dependency cycle " + " -> ".join(cycle))
    return problems
