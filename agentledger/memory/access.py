"""Least-privilege access to memory: what an agent may read and write, checked per call.

An agent declares ``memory: {read: [ns], write: [ns], top_k: 5}`` in the workflow. It then
gets the tools ``memory_search`` and ``memory_episodes`` (when it may read) and
``memory_write`` (when it may write), and every call is admitted here before it becomes a
``tool_call_requested``: a namespace outside the agent's list is refused with a
``tool_call_rejected`` (``namespace_not_allowed``), like a tool outside its allow-list.

Namespace entries may name the task's ``{workflow}``, ``{user}`` or ``{session}`` (the last
two from the goal's inputs), so one declaration keeps tenants, users and sessions apart::

    memory: {read: ["kb/support", "user/{user}"], write: ["user/{user}"], top_k: 5}
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agentledger.projections.task_state import TaskState

SEARCH, WRITE, EPISODES = "memory_search", "memory_write", "memory_episodes"
MEMORY_TOOLS = frozenset({SEARCH, WRITE, EPISODES})
_VARIABLE = re.compile(r"\{(\w+)\}")
_KNOWN = frozenset({"workflow", "user", "session"})


class MemorySpec(BaseModel):
    """An agent's ``memory`` block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    top_k: int = Field(default=5, ge=1, le=50)

    def tools(self) -> tuple[str, ...]:
        """The memory tools this declaration grants."""
        granted = (SEARCH, EPISODES) if self.read else ()
        return (*granted, WRITE) if self.write else granted

    def problems(self) -> list[str]:
        out = []
        for entry in (*self.read, *self.write):
            unknown = set(_VARIABLE.findall(entry)) - _KNOWN
            if unknown:
                out.append(
                    f"namespace {entry!r} names {sorted(unknown)}; only {{workflow}}, "
                    "{user} and {session} are filled in"
                )
        return out


def resolve(entries: tuple[str, ...], state: TaskState) -> list[str]:
    """The namespaces ``entries`` stand for in this task (an entry whose variable the task
    does not define stands for nothing)."""
    values = {
        "workflow": state.workflow.name if state.workflow else "",
        "user": state.inputs.get("user"),
        "session": state.inputs.get("session"),
    }
    out: list[str] = []
    for entry in entries:
        missing = False

        def fill(match: re.Match[str]) -> str:
            nonlocal missing
            value = values.get(match.group(1))
            if not isinstance(value, str) or not value:
                missing = True
                return ""
            return value

        name = _VARIABLE.sub(fill, entry)
        if not missing:
            out.append(name)
    return out


def admit(
    spec: MemorySpec | None, state: TaskState, tool: str, arguments: dict[str, JsonValue]
) -> tuple[dict[str, JsonValue], str | None]:
    """``(arguments to request, refusal or None)`` for a call of a memory tool: the default
    namespace filled in, ``top_k`` capped, and the namespace checked against the list."""
    if tool not in MEMORY_TOOLS:
        return arguments, None
    if spec is None:
        return arguments, f"this agent declares no memory, so it may not call {tool!r}"
    if tool == EPISODES:
        return arguments, None if spec.read else "this agent may not read memory"
    allowed = resolve(spec.write if tool == WRITE else spec.read, state)
    mode = "write" if tool == WRITE else "read"
    namespace = arguments.get("namespace")
    if namespace is None:
        if not allowed:
            return arguments, f"this agent has no namespace it may {mode} in this task"
        namespace = allowed[0]
    if namespace not in allowed:
        return arguments, (
            f"namespace {namespace!r} is outside what this agent may {mode}: {allowed}"
        )
    out = {**arguments, "namespace": namespace}
    if tool == SEARCH:
        top_k = arguments.get("top_k")
        out["top_k"] = min(top_k, spec.top_k) if isinstance(top_k, int) else spec.top_k
    return out, None
