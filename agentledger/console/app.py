"""The console's ASGI app (Starlette): a JSON API, two SSE streams and the static page.

::

    app = build_app(ConsoleSource(log=SqliteEventLog("ledger.db"), ledger=Path("ledger.db")))
    uvicorn.run(app, host="127.0.0.1", port=8765)

Routes: ``/`` the page; ``/api/runs`` (``?status=&workflow=&q=``) and its live stream
``/api/runs/stream``; ``/api/runs/{task}`` (``?until=SEQ``: the replay slider) and its
live stream ``/api/runs/{task}/stream``; ``/api/approvals`` and ``POST
/api/approvals/{id}``; ``/api/analytics``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agentledger.console import views
from agentledger.console.analytics import analytics_report
from agentledger.console.decisions import DecisionDesk
from agentledger.console.index import RunIndex
from agentledger.console.security import TOKEN_COOKIE, Guard
from agentledger.console.source import ConsoleSource
from agentledger.errors import AgentLedgerError, UnknownTaskError, UsageError
from agentledger.streams.log import Recorded

KEEPALIVE_S = 15.0


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type="application/json"
    )


def _sse(name: str, body: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body, default=str) + b"\n\n"


def build_app(
    source: ConsoleSource,
    guard: Guard | None = None,
    *,
    on_stop: Callable[[], None] | None = None,
) -> Starlette:
    """The console over ``source``; ``guard`` holds the access token and CSRF value;
    ``on_stop`` runs when the server shuts down."""
    guard = guard or Guard()
    index = RunIndex(source.log)
    desk = DecisionDesk(source)
    static = resources.files("agentledger.console") / "static"
    page = (static / "index.html").read_text(encoding="utf-8")

    async def events_of(task_id: str, after_seq: int = 0) -> list[Any]:
        return [
            index.erasures.scrub(e.event)  # forgotten memories shown as [erased]
            for e in await source.log.read_task(task_id, after_seq=after_seq)
            if isinstance(e, Recorded) and e.event.seq
        ]

    async def home(request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if not guard.token_matches(given):
                return HTMLResponse("wrong access token", status_code=403)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
            return response
        html = page.replace("{{CSRF}}", guard.csrf).replace("{{SHAPE}}", source.shape)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def runs(request: Request) -> Response:
        return _json({"runs": _filtered(index, request), "version": index.version})

    async def runs_stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            seen = -1
            while True:
                if index.version != seen:
                    seen = index.version
                    yield _sse("runs", {"runs": _filtered(index, request), "version": seen})
                else:
                    yield b": keep-alive\n\n"
                await index.wait_change(seen, KEEPALIVE_S)

        return _stream(body())

    async def run(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        until = request.query_params.get("until")
        events = await events_of(task_id)
        if not events:
            return _json({"error": f"no task {task_id} in this log"}, 404)
        try:
            at = int(until) if until not in (None, "") else None
        except ValueError:
            return _json({"error": f"until must be a seq number, not {until!r}"}, 400)
        view = views.run_view(task_id, events, at)
        view["timeline"] = [views.event_row(e) for e in events]
        return _json(view)

    async def run_stream(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            after = int(request.query_params.get("after") or 0)
        except ValueError:
            return _json({"error": "after must be a seq number"}, 400)

        async def body() -> AsyncIterator[bytes]:
            sent = after
            seen = -1
            while True:
                fresh = await events_of(task_id, sent)
                if fresh:
                    sent = fresh[-1].seq
                    for e in fresh:
                        yield _sse("event", views.event_row(e))
                    events = await events_of(task_id)
                    yield _sse("view", views.run_view(task_id, events))
                elif seen >= 0:
                    yield b": keep-alive\n\n"
                seen = await index.wait_change(max(seen, index.version), KEEPALIVE_S)

        return _stream(body())

    async def approvals(request: Request) -> Response:
        rows = [row for s in index.runs() for row in views.pending_approvals(s)]
        return _json({"approvals": rows})

    async def decide(request: Request) -> Response:
        problem = guard.decision_problem(_headers(request))
        if problem:
            return _json({"error": problem}, 403)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _json({"error": "the body must be JSON"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        verdict = body.get("decision")
        text = body.get("reason") if verdict == "deny" else body.get("note")
        if verdict not in ("approve", "deny"):
            return _json({"error": "decision must be 'approve' or 'deny'"}, 400)
        if verdict == "deny" and not (isinstance(text, str) and text.strip()):
            return _json({"error": "a denial needs a reason"}, 400)
        approval_id = request.path_params["approval_id"]
        task = body.get("task_id") if isinstance(body.get("task_id"), str) else None
        if task is None:  # the index knows which task holds it
            task = next((s.task_id for s in index.runs() if approval_id in s.approvals), None)
        if task is None:
            return _json({"error": f"no approval {approval_id!r} in this log"}, 409)
        try:
            message = await desk.decide(
                approval_id,
                task=task,
                granted=verdict == "approve",
                text=text if isinstance(text, str) and text.strip() else None,
            )
        except (UsageError, UnknownTaskError) as exc:
            return _json({"error": str(exc)}, 409)
        except AgentLedgerError as exc:
            return _json({"error": str(exc)}, 500)
        return _json({"ok": True, "message": message})

    async def analytics(request: Request) -> Response:
        try:
            report = await asyncio.to_thread(analytics_report, source)
        except AgentLedgerError as exc:
            return _json({"error": str(exc)}, 503)
        return _json(report)

    routes = [
        Route("/", home),
        Route("/api/runs", runs),
        Route("/api/runs/stream", runs_stream),
        Route("/api/runs/{task_id}", run),
        Route("/api/runs/{task_id}/stream", run_stream),
        Route("/api/approvals", approvals),
        Route("/api/approvals/{approval_id}", decide, methods=["POST"]),
        Route("/api/analytics", analytics),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await index.start()
        try:
            yield
        finally:
            if on_stop is not None:
                on_stop()
            await index.stop()
            await desk.aclose()
            await source.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.index = index

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            if not guard.allows(_headers(request), dict(request.cookies)) and not (
                scope["path"] == "/" and "token" in request.query_params
            ):
                await JSONResponse(
                    {"error": "this console needs its access token (open /?token=...)"}, 403
                )(scope, receive, send)
                return
        await app(scope, receive, send)

    return _Wrapped(app, guarded)  # type: ignore[return-value]


class _Wrapped:
    """The app behind its guard, keeping ``.state`` reachable for tests and the CLI."""

    def __init__(self, app: Starlette, call: Any) -> None:
        self.app, self._call, self.state = app, call, app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._call(scope, receive, send)


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _stream(body: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _filtered(index: RunIndex, request: Request) -> list[dict[str, Any]]:
    status = request.query_params.get("status") or None
    workflow = request.query_params.get("workflow") or None
    q = (request.query_params.get("q") or "").lower()
    out = []
    for state in index.runs():
        row = views.run_row(state)
        if status and row["status"] != status:
            continue
        if workflow and row["workflow"] != workflow:
            continue
        if q and q not in f"{row['task_id']} {row['goal']} {row['workflow']}".lower():
            continue
        out.append(row)
    return out
