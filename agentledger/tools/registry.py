"""Tools: typed Python functions agents may call, registered once and named in agent specs.

A tool's arguments are validated by a pydantic model derived from its signature (or
given explicitly); its result must be JSON-serialisable or a pydantic model. A tool
that has side effects says so, and receives a ``ToolContext`` whose ``idempotency_key``
it can pass on to the system it changes (the way payment APIs take one)::

    @tool(description="Append a line to the team's notes", side_effect=True, risk="write")
    def add_note(text: Annotated[str, Field(max_length=500)], ctx: ToolContext) -> dict:
        ...

A tool that fails transiently (raises ``TransientToolError``, or times out) is retried
with backoff up to ``max_attempts`` (see agents/backoff.py); ``circuit_breaker`` overrides
the workflow's breaker settings for this tool (see agents/breakers.py).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, create_model

from agentledger.errors import ToolError, UsageError
from agentledger.llm.base import ToolSpec

if TYPE_CHECKING:
    from agentledger.schemas import EventBase, ToolCallRequested

Risk = Literal["read", "write", "destructive", "external"]
RISK_ORDER: dict[str, int] = {"read": 0, "write": 1, "external": 2, "destructive": 3}


class MemoryAccess(Protocol):
    """What the memory tools read through (agentledger/memory/service.py)."""

    async def search(self, namespace: str, query: str, top_k: int) -> list[dict[str, Any]]: ...

    async def episodes(self, task_id: str, scope: str, limit: int) -> list[dict[str, str]]: ...


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a running tool knows about the call it serves."""

    task_id: str
    subtask_id: str
    agent: str
    call_id: str
    idempotency_key: str
    sandbox: Path
    allowed_domains: tuple[str, ...] | None = None  # from the tool's policy (see http_fetch)
    memory: MemoryAccess | None = None  # the runtime's long-term memory, if it has one


ToolFunction = Callable[..., Any]
RecordsOutcome = Callable[["ToolCallRequested", "EventBase"], "list[EventBase]"]
"""Events a completed call records beside its ``tool_call_completed`` (in the same batch),
given the request and the event that caused the outcome; e.g. ``memory_write``."""


class BreakerSettings(BaseModel):
    """``circuit_breaker: {failure_threshold, cooldown_s}`` in a workflow, agent or tool."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    function: ToolFunction
    arguments: type[BaseModel]
    risk: Risk = "read"
    side_effect: bool = False
    safe_to_retry: bool = False  # may be re-run when a crash left its outcome unknown
    timeout_s: float = 60.0
    requires_approval: bool | None = None  # None: the workflow's approvals.min_risk decides
    max_attempts: int = 3  # attempts in all for a transient failure (1: never retry)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    circuit_breaker: BreakerSettings | None = None  # None: the workflow's settings
    # Which raw values behind the primary log's placeholders it receives: per argument,
    # the categories (``{"to": ("email",)}``; see security/release.py); True: personal
    # data in every argument, never secrets.
    raw_values: bool | Mapping[str, Sequence[str]] = field(default=False, hash=False)
    # Arguments that decide where or what (recipients, URLs, paths, amounts): for a side
    # effect, they must not come from untrusted data (security/provenance.py). None: by name.
    decides: tuple[str, ...] | None = None
    wants_context: bool = False
    records: RecordsOutcome | None = None
    _is_async: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise UsageError(
                f"tool {self.name!r}: max_attempts must be at least 1 and the backoff "
                "delays not negative"
            )

    def spec(self) -> ToolSpec:
        return _spec(self.name, self.description, self.arguments)

    def validate(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validated arguments as plain JSON values. Raises ValueError saying what is wrong."""
        try:
            model = self.arguments.model_validate(dict(arguments or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in exc.errors()[:8]
            )
            raise ValueError(f"invalid arguments for tool {self.name!r}: {problems}") from None
        return model.model_dump(mode="json")

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> JsonValue:
        model = self.arguments.model_validate(dict(arguments))
        kwargs = {name: getattr(model, name) for name in type(model).model_fields}
        if self.wants_context:
            kwargs["ctx"] = ctx
        try:
            if self._is_async:
                result = await asyncio.wait_for(self.function(**kwargs), self.timeout_s)
            else:
                result = await asyncio.wait_for(
                    asyncio.to_thread(self.function, **kwargs), self.timeout_s
                )
        except TimeoutError:
            raise ToolError(
                f"tool {self.name!r} timed out after {self.timeout_s}s", kind="timeout"
            ) from None
        except ToolError:
            raise
        except ConnectionError as exc:
            raise ToolError(
                f"{type(exc).__name__}: {exc}", kind="connection_error", retryable=True
            ) from exc
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}", kind="tool_error") from exc
        return _jsonable(result)


@functools.lru_cache(maxsize=1024)
def _spec(name: str, description: str, arguments: type[BaseModel]) -> ToolSpec:
    # Schema generation costs far more than a step's own work: do it once per tool.
    schema = arguments.model_json_schema()
    schema.pop("title", None)
    return ToolSpec(name=name, description=description, parameters=schema)


def _jsonable(value: Any) -> JsonValue:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value  # type: ignore[no-any-return]


def _arguments_model(fn: ToolFunction, name: str) -> tuple[type[BaseModel], bool]:
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    wants_context = False
    for param in inspect.signature(fn).parameters.values():
        if param.name == "ctx" or hints.get(param.name) is ToolContext:
            wants_context = True
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model, wants_context


def tool(
    name: str | None = None,
    *,
    description: str | None = None,
    risk: Risk = "read",
    side_effect: bool = False,
    safe_to_retry: bool = False,
    timeout_s: float = 60.0,
    requires_approval: bool | None = None,
    max_attempts: int = 3,
    backoff_base_s: float = 0.5,
    backoff_max_s: float = 10.0,
    circuit_breaker: BreakerSettings | None = None,
    raw_values: bool | Mapping[str, Sequence[str]] = False,
    decides: Sequence[str] | None = None,
) -> Callable[[ToolFunction], Tool]:
    """Turn a function into a Tool; arguments come from its signature."""

    def wrap(fn: ToolFunction) -> Tool:
        tool_name = name or fn.__name__
        args_model, wants_context = _arguments_model(fn, tool_name)
        doc = inspect.getdoc(fn) or ""
        return Tool(
            name=tool_name,
            description=description or doc.split("\n\n")[0] or tool_name,
            function=fn,
            arguments=args_model,
            risk=risk,
            side_effect=side_effect,
            safe_to_retry=safe_to_retry,
            timeout_s=timeout_s,
            requires_approval=requires_approval,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            circuit_breaker=circuit_breaker,
            raw_values=raw_values,
            decides=None if decides is None else tuple(decides),
            wants_context=wants_context,
            _is_async=inspect.iscoroutinefunction(fn),
        )

    return wrap


def as_tool(obj: Tool | ToolFunction) -> Tool:
    return obj if isinstance(obj, Tool) else tool()(obj)


class ToolRegistry:
    """Tools by name. Agents reference them by name; the graph validates the references."""

    def __init__(self, tools: Iterable[Tool | ToolFunction] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, t: Tool | ToolFunction) -> Tool:
        resolved = as_tool(t)
        if resolved.name in self._tools:
            raise UsageError(f"a tool named {resolved.name!r} is already registered")
        self._tools[resolved.name] = resolved
        return resolved

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __iter__(self) -> Any:
        return iter(self._tools.values())
