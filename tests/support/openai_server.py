"""A real HTTP server speaking the OpenAI chat-completions API, for tests.

It is not a mock: the real ``openai`` client talks HTTP to it on 127.0.0.1. It serves a
queue of scripted replies (answers, tool calls, JSON, status errors with headers, delays,
malformed bodies) and records every request it receives, so tests assert on what was
actually sent.

Three ways to run it::

    # 1. inside an async test (same event loop)
    async with OpenAIStubServer([answer("hi")]) as server:
        model = OpenAIChatModel(ModelSettings(provider="openai", base_url=server.base_url, ...))

    # 2. in a background thread, for code that runs its own loop (the CLI's main())
    #    or for a CLI subprocess that needs a server to talk to
    with OpenAIStubServer([answer("hi")]) as server:
        main(["run", ..., "--base-url", server.base_url])

    # 3. as its own process; prints the base URL as the first stdout line
    python -m tests.support.openai_server --port 0 --script replies.json

A script file is a JSON list of replies (``StubReply.to_json()``), or an object
``{"replies": [...], "default": {...}, "models": ["gpt-4o-mini"]}``. Another process
inspects the server with ``GET /_stub/requests`` and adds replies with
``POST /_stub/replies`` (a JSON list).

With no scripted reply left (and no ``default``) the server answers 400 with a message
saying so, and ``assert_complete()`` fails: it never guesses an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import signal
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = [
    "OpenAIStubServer",
    "RecordedRequest",
    "StubReply",
    "answer",
    "delayed",
    "error",
    "json_answer",
    "malformed_body",
    "no_usage",
    "rate_limited",
    "server_error",
    "tool_call_reply",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class StubReply:
    """One scripted HTTP reply.

    ``body`` is sent as JSON; a chat-completion body whose ``model`` is None gets the
    requested model filled in. ``raw_body`` (text) replaces ``body`` to send something that
    is not JSON. ``delay_s`` waits before answering (to trigger client timeouts).
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw_body: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The reply as a JSON-able dict (the script-file format)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StubReply:
        return cls(**data)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received. ``received_at`` is ``time.monotonic()`` on arrival."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    received_at: float
    status: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- reply builders ----------------------------------------------------------------------


def _completion(
    message: dict[str, Any],
    finish_reason: str,
    *,
    model: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int | None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": f"chatcmpl-stub-{next(_ids)}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }


def answer(
    content: str | None = "ok",
    *,
    model: str | None = None,
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    cached_tokens: int | None = None,
    finish_reason: str = "stop",
) -> StubReply:
    """A plain assistant answer (``model`` None: echo the requested model)."""
    body = _completion(
        {"content": content},
        finish_reason,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
    )
    return StubReply(body=body)


def json_answer(value: Any, **kwargs: Any) -> StubReply:
    """An answer whose content is ``value`` encoded as JSON."""
    return answer(json.dumps(value), **kwargs)


def tool_call_reply(
    *calls: tuple[str, dict[str, Any] | str],
    content: str | None = None,
    model: str | None = None,
    prompt_tokens: int = 20,
    completion_tokens: int = 8,
) -> StubReply:
    """An answer asking for tool calls; string arguments are sent verbatim (even if not JSON)."""
    tool_calls = [
        {
            "id": f"call_stub_{next(_ids)}",
            "type": "function",
            "function": {
                "name": name,
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
        for name, args in calls
    ]
    body = _completion(
        {"content": content, "tool_calls": tool_calls},
        "tool_calls",
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=None,
    )
    return StubReply(body=body)


def error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> StubReply:
    """An OpenAI-style error body ``{"error": {...}}`` with the given status."""
    body = {"error": {"message": message, "type": type, "code": code, "param": param}}
    return StubReply(status=status, body=body, headers=dict(headers or {}))


def rate_limited(retry_after: str | float | None = None, *, code: str | None = None) -> StubReply:
    """A 429, with a ``Retry-After`` header when given (seconds or an HTTP date)."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return error(429, "Rate limit reached", type="requests", code=code, headers=headers)


def server_error(status: int = 500, message: str = "The server had an error") -> StubReply:
    return error(status, message, type="server_error")


def delayed(reply: StubReply, seconds: float) -> StubReply:
    """``reply``, sent after ``seconds``."""
    return dataclasses.replace(reply, delay_s=seconds)


def no_usage(reply: StubReply) -> StubReply:
    """``reply`` without its ``usage`` block, as several OpenAI-compatible servers send it."""
    body = {k: v for k, v in reply.body.items() if k != "usage"}
    return dataclasses.replace(reply, body=body)


def malformed_body(text: str = "<html>bad gateway</html>", status: int = 200) -> StubReply:
    """A reply whose body is not JSON."""
    return StubReply(status=status, raw_body=text, headers={"Content-Type": "text/html"})


# -- the server --------------------------------------------------------------------------


class OpenAIStubServer:
    """The scripted OpenAI-compatible server. See the module docstring."""

    def __init__(
        self,
        replies: Iterable[StubReply] = (),
        *,
        default: StubReply | None = None,
        models: Sequence[str] = ("gpt-4o-mini",),
        host: str = "127.0.0.1",
        port: int = 0,
        embedding_dimensions: int = 32,
    ) -> None:
        self.embedding_dimensions = embedding_dimensions
        self.host = host
        self.port = port
        self.models = list(models)
        self.default = default
        self.requests: list[RecordedRequest] = []
        self.unscripted = 0
        self._replies: deque[StubReply] = deque(replies)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None

    # -- script and inspection --

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: the Azure endpoint form."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what an OpenAI client's ``base_url`` should be."""
        return f"{self.origin}/v1"

    def enqueue(self, *replies: StubReply) -> None:
        self._replies.extend(replies)

    def remaining(self) -> int:
        return len(self._replies)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Recorded chat-completion requests (Azure's deployment path included)."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def bodies(self) -> list[Any]:
        """The JSON bodies of the chat-completion requests, in order."""
        return [r.body for r in self.chat_requests]

    def assert_complete(self) -> None:
        """Fail if replies were never asked for, or a request found no reply."""
        if self._replies or self.unscripted:
            raise AssertionError(
                f"stub server: {len(self._replies)} scripted replies unused, "
                f"{self.unscripted} requests had no scripted reply"
            )

    # -- in-loop lifecycle --

    async def start(self) -> str:
        """Start serving on this event loop; return the base URL."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/_stub/requests", self._list_requests)
        app.router.add_post("/_stub/replies", self._add_replies)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; requests still waiting on a delay are answered 503 at once."""
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OpenAIStubServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- background-thread lifecycle --

    def start_in_thread(self, timeout_s: float = 10.0) -> str:
        """Serve from a daemon thread with its own event loop; return the base URL."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            try:
                self._thread_stop = asyncio.Event()
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._thread_stop.wait())
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        self._thread = threading.Thread(target=serve, name="openai-stub-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError("openai stub server did not start in time")
        if failure:
            raise RuntimeError("openai stub server failed to start") from failure[0]
        return self.base_url

    def stop_thread(self, timeout_s: float = 10.0) -> None:
        """Stop a server started with ``start_in_thread()``."""
        if self._thread is None or self._thread_loop is None or self._thread_stop is None:
            return
        self._thread_loop.call_soon_threadsafe(self._thread_stop.set)
        self._thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> OpenAIStubServer:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()

    # -- handlers --

    def _record(self, request: web.Request, body: Any, status: int, at: float) -> None:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                received_at=at,
                status=status,
            )
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        try:
            body: Any = await request.json()
        except json.JSONDecodeError:
            body = await request.text()
        if self._replies:
            reply = self._replies.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            self.unscripted += 1
            number = len(self.requests) + 1
            reply = error(400, f"openai stub server: no scripted reply left for request #{number}")
        self._record(request, body, reply.status, at)
        if reply.delay_s and self._closing is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay_s)
            if self._closing.is_set():
                return web.json_response({"error": {"message": "stub closing"}}, status=503)
        if reply.raw_body is not None:
            return web.Response(status=reply.status, text=reply.raw_body, headers=reply.headers)
        out = reply.body
        is_completion = isinstance(out, dict) and out.get("object") == "chat.completion"
        if is_completion and out.get("model") is None and isinstance(body, dict):
            out = {**out, "model": body.get("model")}
        return web.json_response(out, status=reply.status, headers=reply.headers)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """Embeddings are computed, not scripted: character bigrams hashed (crc32) into
        ``embedding_dimensions``, so similar texts get similar vectors, deterministically."""
        body: Any = await request.json()
        self._record(request, body, 200, time.monotonic())
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(texts):
            vec = [0.0] * self.embedding_dimensions
            low = f" {str(text).lower()} "
            for j in range(len(low) - 1):
                vec[zlib.crc32(low[j : j + 2].encode()) % self.embedding_dimensions] += 1.0
            norm = sum(v * v for v in vec) ** 0.5 or 1.0
            data.append({"object": "embedding", "index": i, "embedding": [v / norm for v in vec]})
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None, 200, time.monotonic())
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _list_requests(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([r.to_json() for r in self.requests])

    async def _add_replies(self, request: web.Request) -> web.StreamResponse:
        items = await request.json()
        self.enqueue(*(StubReply.from_json(item) for item in items))
        return web.json_response({"queued": self.remaining()})


# -- as a process ------------------------------------------------------------------------


def load_script(path: Path) -> tuple[list[StubReply], StubReply | None, list[str]]:
    """Read a script file: a list of replies, or ``{"replies", "default", "models"}``."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        data = {"replies": data}
    replies = [StubReply.from_json(item) for item in data.get("replies", [])]
    default = StubReply.from_json(data["default"]) if data.get("default") else None
    return replies, default, list(data.get("models", ["gpt-4o-mini"]))


async def _serve(server: OpenAIStubServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base_url = await server.start()
    print(base_url, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.support.openai_server``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.openai_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON file of replies")
    parser.add_argument("--default-answer", help="answer this text when the script runs out")
    args = parser.parse_args(argv)
    replies: list[StubReply] = []
    default: StubReply | None = None
    models = ["gpt-4o-mini"]
    if args.script:
        replies, default, models = load_script(args.script)
    if args.default_answer is not None:
        default = answer(args.default_answer)
    server = OpenAIStubServer(
        replies, default=default, models=models, host=args.host, port=args.port
    )
    asyncio.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
