"""MCP tools: tools of Model Context Protocol servers, under the guarantees of any tool.

A workflow declares its servers (a stdio command, or a streamable HTTP URL) and, under
``tools:``, each server tool agents may use, with its risk and side-effect flag (declared
here, never taken from the server)::

    mcp_servers:
      kb: {command: [python, kb_server.py], timeout_s: 20}
      crm: {url: "http://127.0.0.1:8931/mcp"}
    tools:
      kb_lookup: {mcp: kb/lookup, risk: read, side_effect: false}
      open_ticket: {mcp: crm/create_ticket, risk: write, side_effect: true, requires_approval: true}

Only declared tools are reachable. Arguments are validated against the server's input
schema as pinned for the task (``mcp_tools_pinned``, recorded when the task starts; a
resumed task adopts its recorded pins, and a tool the server has changed since is refused).
A server is started (or connected) on first use; a server that dies mid-call fails that
call with a retryable ``connection_error`` and is started again for the next attempt.
Results are untrusted data: the executor screens them like every tool result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from agentledger.errors import ToolError
from agentledger.llm.base import ToolSpec
from agentledger.schemas import EventBase, GoalSubmitted
from agentledger.schemas.mcp import McpToolsPinned, PinnedMcpTool
from agentledger.tools.registry import Tool, ToolContext

log = logging.getLogger(__name__)


class McpServerSpec(BaseModel):
    """One entry of ``mcp_servers``: exactly one of ``command`` (stdio) or ``url`` (HTTP)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None  # default: the workflow file's directory
    connect_timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of `command` (stdio) or `url` (streamable HTTP)")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="allow")


def _digest(description: str, schema: Mapping[str, Any]) -> str:
    body = orjson.dumps([description, schema], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()[:16]


class McpConnection:
    """One server, started lazily and again after it dies. The ``mcp`` client's context
    managers live in one owner task, so any task may call while it runs."""

    def __init__(self, name: str, spec: McpServerSpec, base_dir: Path | None) -> None:
        self.name = name
        self.spec = spec
        self.base_dir = base_dir
        self.starts = 0  # how often the server was started (or connected)
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._listed: dict[str, Any] | None = None

    def _target(self) -> Any:
        from mcp import StdioServerParameters

        if self.spec.url is not None:
            return self.spec.url
        command = list(self.spec.command or [])
        if command[0] in ("python", "python3"):  # the interpreter agentledger runs on
            command[0] = sys.executable
        cwd = self.spec.cwd or (str(self.base_dir) if self.base_dir else None)
        return StdioServerParameters(
            command=command[0], args=command[1:], env=self.spec.env, cwd=cwd
        )

    async def client(self) -> Any:
        async with self._lock:
            if self._client is not None and self._owner is not None and not self._owner.done():
                return self._client
            await self._close_owner()
            from mcp import Client

            ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            stop = self._stop

            async def own() -> None:
                try:
                    async with Client(self._target()) as client:
                        ready.set_result(client)
                        await stop.wait()
                except BaseException as exc:
                    if not ready.done():
                        ready.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                        raise

            self._owner = asyncio.create_task(own(), name=f"mcp server {self.name}")
            self.starts += 1
            try:
                self._client = await asyncio.wait_for(ready, self.spec.connect_timeout_s)
            except Exception as exc:
                await self._close_owner()
                raise ToolError(
                    f"MCP server {self.name!r} could not be started/connected: "
                    f"{type(exc).__name__}: {exc}",
                    kind="connection_error",
                    retryable=True,
                ) from None
            self._listed = None
            return self._client

    async def list_tools(self) -> dict[str, Any]:
        """The server's tools by name (listed once per connection)."""
        client = await self.client()
        if self._listed is None:
            result = await self._guard(client.list_tools())
            self._listed = {t.name: t for t in result.tools}
        return self._listed

    async def call(self, remote: str, arguments: dict[str, Any], key: str) -> Any:
        client = await self.client()
        return await self._guard(
            client.call_tool(remote, arguments, meta={"agentledger/idempotency_key": key})
        )

    async def _guard(self, request: Any) -> Any:
        from mcp import MCPError

        try:
            return await request
        except (MCPError, OSError, EOFError, ExceptionGroup, RuntimeError) as exc:
            await self.reset()  # dead or confused: the next attempt starts it again
            raise ToolError(
                f"MCP server {self.name!r} failed during the call ({type(exc).__name__}: {exc}); "
                "it will be restarted for the next attempt",
                kind="connection_error",
                retryable=True,
            ) from None

    async def reset(self) -> None:
        async with self._lock:
            await self._close_owner()

    async def _close_owner(self) -> None:
        self._client, self._listed = None, None
        owner, self._owner = self._owner, None
        if owner is not None:
            self._stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(owner, 5.0)
            if not owner.done():
                owner.cancel()


@dataclass
class McpToolset:
    """The workflow's MCP servers and the tool list pinned for the running task(s)."""

    servers: Mapping[str, McpServerSpec]
    base_dir: Path | None = None
    pins: dict[str, PinnedMcpTool] = field(default_factory=dict)  # by registry name
    connections: dict[str, McpConnection] = field(default_factory=dict)

    def connection(self, server: str) -> McpConnection:
        if server not in self.connections:
            self.connections[server] = McpConnection(server, self.servers[server], self.base_dir)
        return self.connections[server]

    async def pin(self, goal: GoalSubmitted, tools: Sequence[McpTool]) -> list[EventBase]:
        """List each server's declared tools now, adopt them, and return the pin events
        (``seq`` left for the writer; not caused by the goal, which still has to be handled)."""
        events: list[EventBase] = []
        for server in sorted({t.server for t in tools}):
            listed = await self.connection(server).list_tools()
            pinned = [
                PinnedMcpTool(
                    name=t.name,
                    remote_name=t.remote_name,
                    description=listed[t.remote_name].description or "",
                    input_schema=listed[t.remote_name].input_schema,
                    digest=_digest(
                        listed[t.remote_name].description or "", listed[t.remote_name].input_schema
                    ),
                )
                for t in tools
                if t.server == server and t.remote_name in listed
            ]
            events.append(
                McpToolsPinned(
                    task_id=goal.task_id,
                    seq=0,
                    correlation_id=goal.correlation_id,
                    server=server,
                    transport=self.servers[server].transport,
                    tools=pinned,
                )
            )
        self.adopt(events)
        return events

    def adopt(self, events: Sequence[EventBase]) -> None:
        """Use the pins recorded in a task's history (a resumed or replayed task)."""
        for event in events:
            if isinstance(event, McpToolsPinned):
                self.pins.update({t.name: t for t in event.tools})

    async def start_task(
        self, tools: Sequence[McpTool], history: Sequence[EventBase]
    ) -> list[EventBase]:
        """At the start of a run: adopt the pins the task recorded, or (a new task) pin the
        servers' tools now and return the ``mcp_tools_pinned`` events to record. A server
        that cannot be reached is left unpinned (its tools are refused, saying so) and is
        tried again when the task is resumed."""
        recorded = [e for e in history if isinstance(e, McpToolsPinned)]
        if recorded or not tools:
            self.adopt(recorded)
            return []
        goal = next((e for e in history if isinstance(e, GoalSubmitted)), None)
        if goal is None:
            return []
        events: list[EventBase] = []
        for server in sorted({t.server for t in tools}):
            try:
                events.extend(await self.pin(goal, [t for t in tools if t.server == server]))
            except ToolError as exc:
                log.error("MCP server %r not pinned for task %s: %s", server, goal.task_id, exc)
        return events

    async def aclose(self) -> None:
        for conn in self.connections.values():
            await conn.reset()


@dataclass(frozen=True)
class McpTool(Tool):
    """A tool of an MCP server, as the workflow declares it."""

    server: str = ""
    remote_name: str = ""
    toolset: McpToolset | None = field(default=None, compare=False, repr=False)

    def _pinned(self) -> PinnedMcpTool:
        pinned = self.toolset.pins.get(self.name) if self.toolset else None
        if pinned is None:
            raise ValueError(
                f"tool {self.name!r} is not offered by MCP server {self.server!r} in this task "
                f"(no {self.remote_name!r} in its pinned tool list)"
            )
        return pinned

    def spec(self) -> ToolSpec:
        pinned = self.toolset.pins.get(self.name) if self.toolset else None
        schema: dict[str, Any] = dict(pinned.input_schema) if pinned else {"type": "object"}
        schema.pop("title", None)
        description = (pinned.description if pinned else "") or self.description
        return ToolSpec(name=self.name, description=description, parameters=schema)

    def validate(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        schema = self._pinned().input_schema
        args = dict(arguments or {})
        errors = sorted(
            jsonschema.Draft202012Validator(schema).iter_errors(args), key=lambda e: list(e.path)
        )
        if errors:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e.path) or 'arguments'}: {e.message}"
                for e in errors[:8]
            )
            raise ValueError(f"invalid arguments for tool {self.name!r}: {problems}")
        return args

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> JsonValue:
        if self.function is not _never_called:
            # Answered instead of called (verify, shadow and replay evals replace a tool's
            # function): the server is never reached, so no side effect happens twice.
            kwargs: dict[str, Any] = dict(arguments)  # as validated against the pinned schema
            if self.wants_context:
                kwargs["ctx"] = ctx
            answer = self.function(**kwargs)
            answered: JsonValue = await answer if inspect.isawaitable(answer) else answer
            return answered
        assert self.toolset is not None
        pinned = self._pinned_for_call()
        conn = self.toolset.connection(self.server)
        try:
            async with asyncio.timeout(self.timeout_s):
                live = (await conn.list_tools()).get(self.remote_name)
                if (
                    live is None
                    or _digest(live.description or "", live.input_schema) != pinned.digest
                ):
                    raise ToolError(
                        f"MCP server {self.server!r} changed tool {self.remote_name!r} since this "
                        "task pinned it; it is not called with a different contract",
                        kind="mcp_tool_changed",
                    )
                result = await conn.call(self.remote_name, dict(arguments), ctx.idempotency_key)
        except TimeoutError:
            await conn.reset()  # a call may still be running there: do not reuse the session
            raise ToolError(
                f"tool {self.name!r} timed out after {self.timeout_s}s", kind="timeout"
            ) from None
        text = "\n".join(getattr(c, "text", "") for c in result.content if hasattr(c, "text"))
        if result.is_error:
            raise ToolError(
                f"MCP tool {self.remote_name!r} reported an error: {text[:2000]}",
                kind="mcp_tool_error",
            )
        structured = result.structured_content
        if isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]  # type: ignore[no-any-return]
        if structured is not None:
            return structured  # type: ignore[no-any-return]
        if text.lstrip()[:1] in ("{", "["):  # a JSON answer sent as text
            with contextlib.suppress(orjson.JSONDecodeError):
                return orjson.loads(text)  # type: ignore[no-any-return]
        return text

    def _pinned_for_call(self) -> PinnedMcpTool:
        try:
            return self._pinned()
        except ValueError as exc:
            raise ToolError(str(exc), kind="unknown_tool") from None


def mcp_tool(name: str, reference: str, toolset: McpToolset, **fields: Any) -> McpTool:
    """The registry tool ``name`` for ``server/remote_tool`` (``reference``)."""
    server, _, remote = reference.partition("/")
    return McpTool(
        name=name,
        description=fields.pop("description", None) or f"{remote} (MCP server {server})",
        function=_never_called,
        arguments=_Arguments,
        server=server,
        remote_name=remote,
        toolset=toolset,
        **fields,
    )


def _never_called(**_: Any) -> None:
    raise AssertionError("an MCP tool runs through McpTool.run")
