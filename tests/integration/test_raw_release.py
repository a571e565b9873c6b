"""Raw values go out only where a tool declares them (real loopback HTTP server, real runs)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiohttp import web

from agentledger.agents.workflow import AgentSpec, Workflow
from agentledger.errors import WorkflowError
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel, call_tool, reply, reply_json
from agentledger.security.policy import SecurityPolicy, ToolPolicy
from agentledger.security.release import ReleaseGrant
from agentledger.testing import make_runtime, run_goal
from agentledger.tools import tool
from agentledger.tools.builtin import http_fetch

pytestmark = pytest.mark.integration

KEY = "sk-live4f9Qa7Zr2Xc8Vb6Nm1Lk3Jh5Gf0Ds"
SECRETS = ("api_key", "token", "secret")  # whichever the detectors call this key
_SECRET = re.compile(r"\[(?:api_key|token|secret):[0-9a-f]{12}\]")


def _key(placeholders: dict[str, str]) -> str:
    return next(v for k, v in placeholders.items() if k != "email")


RECEIVED: list[dict[str, str]] = []


class Recorder:
    """An HTTP server that keeps everything each request carried."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        self.requests.append(f"{request.method} {request.raw_path}\n{headers}\n\n{body}")
        return web.Response(text="Kafka keeps order per partition.", content_type="text/plain")


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    try:
        yield rec
    finally:
        await runner.cleanup()


_URL = re.compile(r"http://\S+?(?=[\"\s\\])")


def _goal_url(r: ModelRequest) -> str:
    """The URL as the model sees it in its prompt (placeholders and all)."""
    match = _URL.search(r.messages[1].content or "")
    assert match is not None, r.messages[1].content
    return match.group()


async def test_http_fetch_never_receives_a_secret(recorder: Recorder, tmp_path: Path) -> None:
    wf = Workflow.build(
        name="fetch",
        orchestrator="planner",
        agents=[AgentSpec("planner", routes_to=("reader",)), AgentSpec("reader", tools=("fetch",))],
        tools=[replace(http_fetch, name="fetch")],
        tool_policies={"fetch": ToolPolicy(allowed_domains=("127.0.0.1",))},
    )
    seen: list[str] = []

    def reader(r: ModelRequest) -> ModelResponse:
        if r.iteration == 1:
            seen.append(_goal_url(r))
            return call_tool("fetch", url=seen[0])
        return reply("fetched")

    model = ScriptedModel(
        lambda r: (
            reply_json({"subtasks": [{"id": "r", "agent": "reader"}]})
            if r.agent == "planner"
            else reader(r)
        )
    )
    goal = f"Read http://127.0.0.1:{recorder.port}/status?api_key={KEY}&token={KEY} please"
    run = await run_goal(wf, model, goal, runtime=make_runtime(wf, model, sandbox=tmp_path))
    assert run.state.status == "completed"
    # the model saw placeholders; the IP address was released into the URL, the key not
    assert seen[0].startswith("http://[ip:") and _SECRET.search(seen[0])
    (received,) = recorder.requests
    request_line = unquote(received).splitlines()[0]
    assert _SECRET.fullmatch(request_line.split("=")[1].split("&")[0])  # the placeholder
    assert KEY not in unquote(received) and KEY[3:] not in received
    assert run.of_type("raw_value_released") == []  # nothing secret went out
    (done,) = run.of_type("tool_call_completed")
    assert isinstance(done.result, dict) and done.result["status"] == 200


@tool(
    risk="external",
    side_effect=True,
    raw_values={"to": ("email",), "api_key": SECRETS},
    description="Call the partner's API on behalf of a customer",
)
def call_partner(to: str, api_key: str, note: str) -> dict[str, str]:
    RECEIVED.append({"to": to, "api_key": api_key, "note": note})
    return {"status": "ok"}


def partner_workflow(*grants: ReleaseGrant) -> Workflow:
    return Workflow.build(
        name="partner",
        orchestrator="planner",
        agents=[AgentSpec("planner", routes_to=("clerk",)), AgentSpec("clerk", tools=("partner",))],
        tools=[replace(call_partner, name="partner")],
        security=SecurityPolicy(release=grants),
    )


_PH = re.compile(r"\[(email|api_key|token|secret):[0-9a-f]{12}\]")


async def _run_partner(wf: Workflow, tmp_path: Path) -> tuple[object, dict[str, str]]:
    placeholders: dict[str, str] = {}

    def clerk(r: ModelRequest) -> ModelResponse:
        if r.iteration == 1:
            for m in _PH.finditer(r.messages[1].content or ""):
                placeholders[m.group(1)] = m.group()
            email = placeholders["email"]
            key = next(v for k, v in placeholders.items() if k != "email")
            return call_tool("partner", to=email, api_key=key, note=f"for {email}")
        return reply("done")

    model = ScriptedModel(
        lambda r: (
            reply_json({"subtasks": [{"id": "c", "agent": "clerk"}]})
            if r.agent == "planner"
            else clerk(r)
        )
    )
    goal = f"Register ann@example.com with the partner; our key is {KEY}"
    run = await run_goal(wf, model, goal, runtime=make_runtime(wf, model, sandbox=tmp_path))
    return run, placeholders


@pytest.fixture(autouse=True)
def _clear() -> None:
    RECEIVED.clear()


async def test_only_declared_arguments_get_raw_values_and_no_secret_goes_out_ungranted(
    tmp_path: Path,
) -> None:
    run, ph = await _run_partner(partner_workflow(), tmp_path)
    # to: declared email -> raw; note: not declared -> placeholder; api_key: a secret for an
    # external tool without a grant -> placeholder
    assert [
        {"to": "ann@example.com", "api_key": _key(ph), "note": f"for {ph['email']}"}
    ] == RECEIVED
    assert run.of_type("raw_value_released") == []  # type: ignore[attr-defined]


async def test_a_granted_secret_is_released_and_recorded(tmp_path: Path) -> None:
    grants = [ReleaseGrant(tool="partner", argument="api_key", category=c) for c in SECRETS]
    run, ph = await _run_partner(partner_workflow(*grants), tmp_path)
    assert [{"to": "ann@example.com", "api_key": KEY, "note": f"for {ph['email']}"}] == RECEIVED
    (released,) = run.of_type("raw_value_released")  # type: ignore[attr-defined]
    assert (released.tool, released.argument, released.granted_by) == (
        "partner",
        "api_key",
        "workflow",
    )
    assert released.category in SECRETS
    assert released.placeholder == _key(ph)
    assert KEY not in str([e.model_dump() for e in run.events])  # type: ignore[attr-defined]


def test_declarations_and_grants_are_checked_when_the_workflow_is_built() -> None:
    @tool(raw_values={"recipient": ("email",), "to": ("shoe_size",)})
    def mail(to: str) -> str:
        return to

    with pytest.raises(WorkflowError) as caught:
        Workflow.build(
            name="bad",
            orchestrator="planner",
            agents=[AgentSpec("planner", routes_to=("m",)), AgentSpec("m", tools=("mail",))],
            tools=[mail],
            security=SecurityPolicy(
                release=(ReleaseGrant(tool="mail", argument="to", category="api_key"),)
            ),
        )
    text = str(caught.value)
    assert "'recipient', which is not one of its arguments" in text
    assert "category 'shoe_size' of 'to' is unknown" in text
    assert "grants 'api_key' in mail.to, but the tool does not declare it" in text
