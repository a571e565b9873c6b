"""Workflows: agents, their tools and routes, and the task limits; from a file or Python.

A workflow file (YAML or TOML)::

    name: research-brief
    orchestrator: planner
    model: {provider: scripted, script: "brief_model:respond"}
    tools:
      search_notes: {function: "brief_tools:search_notes"}
    agents:
      planner:
        instructions: Break the goal into research, writing and review.
        routes_to: [researcher, writer, reviewer]
      researcher:
        tools: [search_notes]
        output: "brief_contracts:Findings"
        routes_to: [writer]
      writer: {output: "brief_contracts:Brief", routes_to: [reviewer]}
      reviewer: {output: "brief_contracts:Review"}
    limits: {max_tokens: 200000, max_cost_usd: 2.0, max_wall_time_s: 600}
    circuit_breaker: {failure_threshold: 5, cooldown_s: 30}   # per agent and per tool

Every guard rail, its default and its key: docs/limits.md.

Python modules named in it are imported from the file's own directory first. Everything
is validated when loaded; every problem is reported at once in a WorkflowError.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from agentledger._imports import load_object
from agentledger.agents import aggregate, handoffs
from agentledger.agents.aggregate import AggregateSpec
from agentledger.agents.approval_policy import ApprovalPolicy
from agentledger.agents.context_window import ContextSettings
from agentledger.agents.graph import AgentGraph, Edge
from agentledger.agents.plans import default_problem, plan_problems
from agentledger.errors import ConfigurationError, WorkflowError
from agentledger.llm.base import ModelSettings
from agentledger.llm.pricing import ModelPrice
from agentledger.memory.access import MemorySpec
from agentledger.memory.config import MemoryConfig
from agentledger.memory.tools import memory_tools
from agentledger.schemas import FailurePolicy, Plan, RunningBranches
from agentledger.security import release
from agentledger.security.policy import SecurityPolicy, ToolPolicy, ToolPolicyEntry
from agentledger.settings import Settings
from agentledger.tools.mcp import McpServerSpec, McpTool, McpToolset, mcp_tool
from agentledger.tools.registry import BreakerSettings, Tool, ToolRegistry, as_tool

Pattern = Literal["orchestrated", "peer_to_peer"]
UnpricedCalls = Literal["warn", "refuse"]


class Limits(BaseModel):
    """Per-task budgets. ``None`` means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_wall_time_s: float | None = Field(default=None, gt=0)
    max_plan_attempts: int = Field(default=3, ge=1)
    # peer_to_peer: total handoffs, a pair bouncing work back and forth, refused handoffs
    max_handoffs: int = Field(default=20, ge=1)
    oscillation_cycles: int = Field(default=2, ge=1)
    max_handoff_rejections: int = Field(default=2, ge=0)
    max_replans: int = Field(default=2, ge=0)  # per planning scope, for on_failure: replan
    # Task-wide ceilings that hold against any plan, repair or retry; None: the settings'
    # (AGENTLEDGER_MAX_LLM_CALLS, AGENTLEDGER_MAX_EVENTS, AGENTLEDGER_UNPRICED_CALLS).
    max_llm_calls: int | None = Field(default=None, ge=1)
    max_events: int | None = Field(default=None, ge=1)
    unpriced_calls: UnpricedCalls | None = None  # with max_cost_usd: warn once, or refuse

    def with_settings(self, settings: Settings) -> Limits:
        """These limits, with the settings' values where the workflow set none."""
        update = {
            name: getattr(settings, name)
            for name in ("max_llm_calls", "max_events", "unpriced_calls")
            if getattr(self, name) is None
        }
        return self.model_copy(update=update) if update else self

    @property
    def llm_call_ceiling(self) -> int:
        return self.max_llm_calls or _SETTING_DEFAULTS["max_llm_calls"]

    @property
    def event_ceiling(self) -> int:
        return self.max_events or _SETTING_DEFAULTS["max_events"]

    @property
    def unpriced_policy(self) -> UnpricedCalls:
        return self.unpriced_calls or _SETTING_DEFAULTS["unpriced_calls"]


_SETTING_DEFAULTS: dict[str, Any] = {
    name: Settings.model_fields[name].default
    for name in ("max_llm_calls", "max_events", "unpriced_calls")
}
_ALL_POLICIES: tuple[FailurePolicy, ...] = ("fail_task", "retry", "replan", "skip")


@dataclass(frozen=True)
class AgentSpec:
    """One agent: what it is told, which model it uses, what it may call and hand work to."""

    name: str
    instructions: str = ""
    description: str = ""
    model: ModelSettings = field(default_factory=ModelSettings)
    tools: tuple[str, ...] = ()
    output_model: type[BaseModel] | None = None
    routes_to: tuple[str, ...] = ()
    loop_routes: frozenset[str] = frozenset()
    warn_iterations: int = 10
    max_iterations: int = 15
    max_repairs: int = 2
    max_repeated_calls: int = 3  # the same tool with the same arguments this often is a loop
    aggregate: AggregateSpec | None = None  # a swarm's aggregator: combines its candidates
    orchestrates: bool = False  # plans each subtask it gets for its own team (routes_to)
    on_failure: FailurePolicy = "fail_task"
    max_retries: int = 2  # for on_failure: retry
    default_output: JsonValue = None  # for on_failure: skip, what dependents get instead
    circuit_breaker: BreakerSettings | None = None  # None: the workflow's settings
    context: ContextSettings = field(default_factory=ContextSettings)
    max_rejected_calls: int = 5  # refused tool calls a subtask may get before it fails
    # The failure policies a planner may give this agent's subtasks (others are clamped).
    plan_on_failure: tuple[FailurePolicy, ...] = _ALL_POLICIES
    memory: MemorySpec | None = None  # namespaces it may read/write (agentledger/memory)

    def __post_init__(self) -> None:
        if self.memory is not None:  # the memory tools come with the declaration
            granted = tuple(t for t in self.memory.tools() if t not in self.tools)
            object.__setattr__(self, "tools", (*self.tools, *granted))


@dataclass(frozen=True)
class Workflow:
    name: str
    orchestrator: str
    agents: Mapping[str, AgentSpec]
    tools: ToolRegistry
    limits: Limits = field(default_factory=Limits)
    description: str = ""
    source: Path | None = None
    digest: str = ""
    result_field: str | None = None  # the field of the final result to present to people
    approvals: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    pattern: Pattern = "orchestrated"
    entry: str = ""  # peer_to_peer: the agent the goal goes to (there is no orchestrator)
    plan: Plan | None = None  # a static plan: used instead of asking the orchestrator
    running_branches_on_failure: RunningBranches = "cancel"
    circuit_breaker: BreakerSettings = field(default_factory=BreakerSettings)
    security: SecurityPolicy = field(default_factory=SecurityPolicy)
    tool_policies: Mapping[str, ToolPolicy] = field(default_factory=dict)  # by tool name
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)  # declared, by model name
    memory: MemoryConfig = field(default_factory=MemoryConfig)  # embedder and index location
    mcp: McpToolset | None = None  # MCP servers, when tools come from them (tools/mcp.py)

    @property
    def mcp_tools(self) -> list[McpTool]:
        return [t for t in self.tools if isinstance(t, McpTool)]

    @property
    def uses_memory(self) -> bool:
        return any(a.memory is not None for a in self.agents.values())

    def present(self, result: Any) -> Any:
        """The part of a task's result a person wants to read (see ``result_field``)."""
        if self.result_field and isinstance(result, dict) and self.result_field in result:
            return result[self.result_field]
        return result

    @property
    def graph(self) -> AgentGraph:
        edges = [
            Edge(a.name, target, target in a.loop_routes)
            for a in self.agents.values()
            for target in a.routes_to
        ]
        start = self.entry if self.pattern == "peer_to_peer" else self.orchestrator
        return AgentGraph(self.agents, edges, start)

    def agent(self, name: str) -> AgentSpec:
        return self.agents[name]

    def problems(self) -> list[str]:
        problems = list(self.graph.problems())
        for a in self.agents.values():
            for t in a.tools:
                if t not in self.tools:
                    problems.append(f"agent {a.name!r} allows tool {t!r}, which is not registered")
            if a.memory is not None:
                problems.extend(f"agent {a.name!r}: memory: {p}" for p in a.memory.problems())
            if a.max_rejected_calls < 1:
                problems.append(f"agent {a.name!r}: max_rejected_calls must be at least 1")
            if a.warn_iterations > a.max_iterations:
                problems.append(
                    f"agent {a.name!r}: warn_iterations ({a.warn_iterations}) is above "
                    f"max_iterations ({a.max_iterations})"
                )
        for t in self.tool_policies:
            if t not in self.tools:
                problems.append(f"a policy is set for tool {t!r}, which is not registered")
        for tool in self.tools:
            problems.extend(release.declaration_problems(tool))
            unknown = set(tool.decides or ()) - set(tool.arguments.model_fields)
            if unknown:
                problems.append(
                    f"tool {tool.name!r} declares decides {sorted(unknown)}, which are not "
                    "among its arguments"
                )
        problems.extend(release.grant_problems(self.security.release, self.tools))
        orchestrator = self.agents.get(self.orchestrator)
        if orchestrator is not None and orchestrator.output_model is not None:
            problems.append(
                f"orchestrator {self.orchestrator!r} must not declare an output model: its output is a Plan"
            )
        problems.extend(handoffs.workflow_problems(self))
        problems.extend(aggregate.workflow_problems(self))
        problems.extend(self._pattern_problems())
        return problems

    def _pattern_problems(self) -> list[str]:
        """Sub-orchestrators, failure policies and the static plan."""
        problems: list[str] = []
        for a in self.agents.values():
            if a.orchestrates and a.output_model is not None:
                problems.append(
                    f"agent {a.name!r} orchestrates, so its output is a Plan: remove its output model"
                )
            if a.orchestrates and not a.routes_to:
                problems.append(f"agent {a.name!r} orchestrates but routes to no team")
            if a.orchestrates and a.on_failure == "retry":
                problems.append(
                    f"agent {a.name!r} orchestrates a nested plan and cannot be retried: "
                    "use on_failure replan, skip or fail_task"
                )
            if a.on_failure == "skip":
                problem = default_problem(a.default_output, a.output_model)
                if problem:
                    problems.append(f"agent {a.name!r}: default {problem}")
        if self.plan is not None and not self.graph.problems():
            problems.extend(f"plan: {p}" for p in plan_problems(self.plan, self, self.orchestrator))
        return problems

    @classmethod
    def build(
        cls,
        *,
        name: str,
        orchestrator: str = "",
        agents: Iterable[AgentSpec],
        tools: Iterable[Tool | Any] = (),
        limits: Limits | None = None,
        description: str = "",
        approvals: ApprovalPolicy | None = None,
        pattern: Pattern = "orchestrated",
        entry: str = "",
        plan: Plan | None = None,
        running_branches_on_failure: RunningBranches = "cancel",
        circuit_breaker: BreakerSettings | None = None,
        security: SecurityPolicy | None = None,
        tool_policies: Mapping[str, ToolPolicy] | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        memory: MemoryConfig | None = None,
    ) -> Workflow:
        """Declare a workflow in Python; validated like a file."""
        specs = {a.name: a for a in agents}
        tools = list(tools)
        if any(a.memory is not None for a in specs.values()):
            tools.extend(memory_tools())
        wf = cls(
            name=name,
            orchestrator=orchestrator,
            pattern=pattern,
            entry=entry,
            agents=specs,
            tools=ToolRegistry(tools),
            limits=limits or Limits(),
            description=description,
            digest=_digest(repr(sorted(specs))),
            approvals=approvals or ApprovalPolicy(),
            plan=plan,
            running_branches_on_failure=running_branches_on_failure,
            circuit_breaker=circuit_breaker or BreakerSettings(),
            security=security or SecurityPolicy(),
            tool_policies=dict(tool_policies or {}),
            prices=dict(prices or {}),
            memory=memory or MemoryConfig(),
        )
        problems = wf.problems()
        if problems:
            raise WorkflowError(problems, name)
        return wf


class _Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    loop: bool = False


class _BreakerOverride(BaseModel):
    """Some fields of a ``circuit_breaker`` block; the rest come from the workflow's."""

    model_config = ConfigDict(extra="forbid")
    failure_threshold: int | None = Field(default=None, ge=1)
    cooldown_s: float | None = Field(default=None, gt=0)

    def over(self, base: BreakerSettings) -> BreakerSettings:
        return base.model_copy(update=self.model_dump(exclude_none=True))


class _ToolEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    function: str | None = None
    mcp: str | None = None  # "server/tool" of an MCP server in mcp_servers
    description: str | None = None
    risk: str | None = None
    side_effect: bool | None = None
    safe_to_retry: bool | None = None
    timeout_s: float | None = None
    requires_approval: bool | None = None
    max_attempts: int | None = Field(default=None, ge=1)
    backoff_base_s: float | None = Field(default=None, ge=0)
    backoff_max_s: float | None = Field(default=None, ge=0)
    circuit_breaker: _BreakerOverride | None = None
    raw_values: bool | dict[str, list[str]] | None = None  # see security/release.py
    decides: tuple[str, ...] | None = None  # see security/provenance.py
    policy: ToolPolicyEntry | None = None


class _AgentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    instructions: str = ""
    model: dict[str, Any] = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)
    output: str | None = None
    routes_to: list[str | _Route] = Field(default_factory=list)
    warn_iterations: int | None = Field(default=None, ge=1)
    max_iterations: int | None = Field(default=None, ge=1)
    max_repairs: int = Field(default=2, ge=0)
    max_repeated_calls: int = Field(default=3, ge=2)
    aggregate: AggregateSpec | None = None
    orchestrates: bool = False
    on_failure: FailurePolicy = "fail_task"
    max_retries: int = Field(default=2, ge=0)
    default: JsonValue = None
    circuit_breaker: _BreakerOverride | None = None
    context: ContextSettings = Field(default_factory=ContextSettings)
    max_rejected_calls: int = Field(default=5, ge=1)
    plan_on_failure: list[FailurePolicy] | None = None
    memory: MemorySpec | None = None


class _WorkflowFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    pattern: Pattern = "orchestrated"
    orchestrator: str | None = None
    entry: str | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, _ToolEntry] = Field(default_factory=dict)
    agents: dict[str, _AgentEntry] = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)
    result_field: str | None = None
    approvals: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    plan: Plan | None = None
    running_branches_on_failure: RunningBranches = "cancel"
    circuit_breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    security: SecurityPolicy = Field(default_factory=SecurityPolicy)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _who_starts(self) -> Self:
        if self.pattern == "peer_to_peer":
            if self.orchestrator is not None:
                raise ValueError(
                    "a peer_to_peer workflow has no orchestrator: the goal goes to `entry`"
                )
            if self.entry is None:
                raise ValueError(
                    "a peer_to_peer workflow needs `entry`: the agent the goal goes to"
                )
        elif self.orchestrator is None:
            raise ValueError("`orchestrator` is required (or `pattern: peer_to_peer` with `entry`)")
        elif self.entry is not None:
            raise ValueError("`entry` is for peer_to_peer workflows; this one has an orchestrator")
        return self


def _digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()[:16]


def _parse(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowError([f"cannot read the file: {exc.strerror or exc}"], str(path)) from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode())
        else:
            data = yaml.safe_load(raw)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WorkflowError(
            [f"not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}"], str(path)
        ) from None
    if not isinstance(data, dict):
        raise WorkflowError(
            ["the file must hold a mapping (name, orchestrator, agents, ...)"], str(path)
        )
    return data, raw


def load_workflow(path: str | Path, *, settings: Settings | None = None) -> Workflow:
    """Load and validate a workflow file. Raises WorkflowError listing every problem."""
    settings = settings or Settings()
    path = Path(path).resolve()
    data, raw = _parse(path)
    try:
        spec = _WorkflowFile.model_validate(data)
    except ValidationError as exc:
        raise WorkflowError(
            [
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                for err in exc.errors()
            ],
            str(path),
        ) from None
    base_dir = path.parent
    problems: list[str] = []

    registry = ToolRegistry()
    policies: dict[str, ToolPolicy] = {}
    toolset = McpToolset(spec.mcp_servers, base_dir) if spec.mcp_servers else None
    for tool_name, tool_entry in spec.tools.items():
        if tool_entry.mcp is not None or tool_entry.function is None:
            problems.extend(_add_mcp_tool(registry, tool_name, tool_entry, toolset, spec))
            continue
        try:
            obj = load_object(tool_entry.function, base_dir=base_dir, what=f"tool {tool_name!r}")
            t = as_tool(obj)
            overrides = {
                k: v
                for k, v in tool_entry.model_dump(
                    exclude={"function", "circuit_breaker", "policy"}
                ).items()
                if v is not None
            }
            if tool_entry.circuit_breaker is not None:
                base = t.circuit_breaker or spec.circuit_breaker
                overrides["circuit_breaker"] = tool_entry.circuit_breaker.over(base)
            t = Tool(**{**_tool_fields(t), "name": tool_name, **overrides})
            registry.register(t)
            if tool_entry.policy is not None:
                policies[tool_name] = tool_entry.policy.build(base_dir, tool_name)
        except ConfigurationError as exc:
            problems.append(str(exc))
    if any(entry.memory is not None for entry in spec.agents.values()):
        for t in memory_tools():
            if t.name in registry:
                problems.append(f"tool {t.name!r} is the memory tool of that name: rename yours")
            else:
                registry.register(t)

    default_model = {**spec.model, **settings.model_overrides()}
    agents: dict[str, AgentSpec] = {}
    for agent_name, entry in spec.agents.items():
        try:
            model = ModelSettings.model_validate(
                {**default_model, **entry.model, **settings.model_overrides()}
            )
        except ValidationError as exc:
            problems.append(f"agents.{agent_name}.model: {exc.errors()[0]['msg']}")
            model = ModelSettings()
        output_model = None
        if entry.output:
            try:
                output_model = load_object(
                    entry.output, base_dir=base_dir, what=f"output of {agent_name!r}"
                )
                if not (isinstance(output_model, type) and issubclass(output_model, BaseModel)):
                    problems.append(
                        f"agents.{agent_name}.output: {entry.output!r} is not a pydantic model"
                    )
                    output_model = None
            except ConfigurationError as exc:
                problems.append(str(exc))
        routes = [r if isinstance(r, _Route) else _Route(to=r) for r in entry.routes_to]
        agents[agent_name] = AgentSpec(
            name=agent_name,
            instructions=entry.instructions,
            description=entry.description,
            model=model,
            tools=tuple(entry.tools),
            output_model=output_model,
            routes_to=tuple(r.to for r in routes),
            loop_routes=frozenset(r.to for r in routes if r.loop),
            warn_iterations=entry.warn_iterations or settings.warn_iterations,
            max_iterations=entry.max_iterations or settings.max_iterations,
            max_repairs=entry.max_repairs,
            max_repeated_calls=entry.max_repeated_calls,
            aggregate=entry.aggregate,
            orchestrates=entry.orchestrates,
            on_failure=entry.on_failure,
            max_retries=entry.max_retries,
            default_output=entry.default,
            circuit_breaker=(
                entry.circuit_breaker.over(spec.circuit_breaker) if entry.circuit_breaker else None
            ),
            context=entry.context,
            max_rejected_calls=entry.max_rejected_calls,
            plan_on_failure=(
                tuple(entry.plan_on_failure) if entry.plan_on_failure is not None else _ALL_POLICIES
            ),
            memory=entry.memory,
        )
    wf = Workflow(
        name=spec.name,
        orchestrator=spec.orchestrator or "",
        pattern=spec.pattern,
        entry=spec.entry or "",
        agents=agents,
        tools=registry,
        limits=spec.limits.with_settings(settings),
        description=spec.description,
        source=path,
        digest=_digest(raw),
        result_field=spec.result_field,
        approvals=spec.approvals,
        plan=spec.plan,
        running_branches_on_failure=spec.running_branches_on_failure,
        circuit_breaker=spec.circuit_breaker,
        security=spec.security.model_copy(
            update={"primary_log": spec.security.primary_log or settings.primary_log}
        ),
        tool_policies=policies,
        prices=spec.prices,
        mcp=toolset,
        memory=spec.memory.model_copy(
            update={"index": base_dir / spec.memory.index} if spec.memory.index else {}
        ),
    )
    problems.extend(wf.problems())
    if problems:
        raise WorkflowError(problems, str(path))
    return wf


def _add_mcp_tool(
    registry: ToolRegistry,
    name: str,
    entry: _ToolEntry,
    toolset: McpToolset | None,
    spec: _WorkflowFile,
) -> list[str]:
    """Register the MCP tool of ``entry``; its risk and side effect must be declared here."""
    if entry.function is not None:
        return [f"tool {name!r}: give `function` or `mcp`, not both"]
    if entry.mcp is None:
        return [f"tool {name!r}: give `function` (a Python tool) or `mcp` (server/tool)"]
    server, sep, remote = entry.mcp.partition("/")
    problems = []
    if not sep or not remote:
        problems.append(f"tool {name!r}: mcp must look like server/tool, not {entry.mcp!r}")
    elif toolset is None or server not in toolset.servers:
        problems.append(f"tool {name!r}: MCP server {server!r} is not declared in mcp_servers")
    if entry.risk is None or entry.side_effect is None:
        problems.append(
            f"tool {name!r}: declare `risk` and `side_effect` for an MCP tool (they are never "
            "taken from the server)"
        )
    if entry.policy is not None:
        problems.append(f"tool {name!r}: policies are for Python tools; not supported for MCP")
    if problems or toolset is None:
        return problems
    fields = entry.model_dump(exclude={"function", "mcp", "circuit_breaker", "policy"})
    fields = {k: v for k, v in fields.items() if v is not None}
    if entry.circuit_breaker is not None:
        fields["circuit_breaker"] = entry.circuit_breaker.over(spec.circuit_breaker)
    registry.register(mcp_tool(name, entry.mcp, toolset, **fields))
    return []


def _tool_fields(t: Tool) -> dict[str, Any]:
    return {
        "name": t.name,
        "description": t.description,
        "function": t.function,
        "arguments": t.arguments,
        "risk": t.risk,
        "side_effect": t.side_effect,
        "safe_to_retry": t.safe_to_retry,
        "timeout_s": t.timeout_s,
        "requires_approval": t.requires_approval,
        "max_attempts": t.max_attempts,
        "backoff_base_s": t.backoff_base_s,
        "backoff_max_s": t.backoff_max_s,
        "circuit_breaker": t.circuit_breaker,
        "raw_values": t.raw_values,
        "decides": t.decides,
        "wants_context": t.wants_context,
        "records": t.records,
        "_is_async": t._is_async,
    }
