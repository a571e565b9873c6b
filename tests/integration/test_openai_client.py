"""OpenAIChatModel through the real openai client, over HTTP, against a local stub server."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import traceback
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from agentledger.errors import ConfigurationError
from agentledger.llm import (
    Message,
    ModelRequest,
    ModelSettings,
    PriceTable,
    ScriptedModel,
    ToolSpec,
)
from agentledger.llm.base import AttemptNote
from agentledger.llm.factory import build_model, build_models
from agentledger.llm.openai_client import (
    ModelCallError,
    OpenAIChatModel,
    RetryPolicy,
    parse_retry_after,
)
from agentledger.llm.tokens import estimate_usage
from agentledger.schemas.llm import RecordedToolCall, TokenUsage
from tests.support.openai_server import (
    OpenAIStubServer,
    answer,
    delayed,
    error,
    json_answer,
    malformed_body,
    no_usage,
    rate_limited,
    server_error,
    tool_call_reply,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

KEY_ENV = "AGENTLEDGER_TEST_OPENAI_KEY"
KEY = "sk-test-0123456789-SECRET-abcdef"
FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)
REPO = Path(__file__).resolve().parents[2]

ModelFactory = Callable[..., OpenAIChatModel]


@pytest.fixture
async def server() -> AsyncIterator[OpenAIStubServer]:
    async with OpenAIStubServer() as stub:
        yield stub


@pytest.fixture
async def make_model(
    server: OpenAIStubServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ModelFactory]:
    """Models pointed at the stub server, key in KEY_ENV, tiny retry delays; closed after."""
    monkeypatch.setenv(KEY_ENV, KEY)
    built: list[OpenAIChatModel] = []

    def make(**overrides: Any) -> OpenAIChatModel:
        retry = overrides.pop("retry", FAST)
        options: dict[str, Any] = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "timeout_s": 5.0,
            "max_retries": 2,
        }
        options.update(overrides)
        model = OpenAIChatModel(ModelSettings(**options), retry=retry)
        built.append(model)
        return model

    yield make
    for model in built:
        await model.aclose()


def ask(content: str = "What is Kafka?", **fields: Any) -> ModelRequest:
    values: dict[str, Any] = {
        "task_id": "t-1",
        "subtask_id": "s-1",
        "agent": "researcher",
        "iteration": 1,
        "model": "gpt-4o-mini",
        "messages": [
            Message(role="system", content="You are a researcher."),
            Message(role="user", content=content),
        ],
    }
    values.update(fields)
    return ModelRequest(**values)


SEARCH = ToolSpec(
    name="search_notes",
    description="Search the team's notes.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
)
CLOCK = ToolSpec(name="clock", description="The time now.", parameters={"type": "object"})
BRIEF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "points": {"type": "array"}},
    "required": ["title", "points"],
}


# -- answers -----------------------------------------------------------------------------


async def test_plain_answer(server: OpenAIStubServer, make_model: ModelFactory) -> None:
    server.enqueue(answer("Kafka is a log.", prompt_tokens=12, completion_tokens=5))
    model = make_model(temperature=0.3, max_output_tokens=200)

    response = await model.complete(ask())

    assert response.content == "Kafka is a log."
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini"
    assert response.attempts == 1
    assert not response.used_fallback
    assert response.tool_calls == []
    assert response.raw is not None
    assert response.raw["object"] == "chat.completion"
    (sent,) = server.chat_requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == [
        {"role": "system", "content": "You are a researcher."},
        {"role": "user", "content": "What is Kafka?"},
    ]
    assert sent.body["temperature"] == 0.3
    # A compatible server (custom base_url) gets the widely understood max_tokens.
    assert sent.body["max_tokens"] == 200
    assert "tools" not in sent.body
    assert "response_format" not in sent.body
    server.assert_complete()


async def test_tool_calls_are_sent_as_function_tools_and_parsed(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(tool_call_reply(("search_notes", {"query": "kafka"}), ("clock", "")))
    model = make_model()
    earlier = RecordedToolCall(call_id="call_a", tool="search_notes", arguments={"query": "log"})
    history = [
        Message(role="system", content="You are a researcher."),
        Message(role="user", content="Find notes."),
        Message(role="assistant", tool_calls=[earlier]),
        Message(role="tool", tool_call_id="call_a", content='{"hits": 0}'),
    ]

    response = await model.complete(ask(messages=history, tools=[SEARCH, CLOCK]))

    sent = server.bodies[0]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search_notes",
                "description": "Search the team's notes.",
                "parameters": SEARCH.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "clock",
                "description": "The time now.",
                "parameters": {"type": "object"},
            },
        },
    ]
    assert sent["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "search_notes", "arguments": '{"query":"log"}'},
            }
        ],
    }
    assert sent["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_a",
        "content": '{"hits": 0}',
    }
    assert response.finish_reason == "tool_calls"
    search, clock = response.tool_calls
    assert search.tool == "search_notes"
    assert search.call_id.startswith("call_stub_")
    assert search.arguments == {"query": "kafka"}
    assert search.raw_arguments is None
    assert clock.tool == "clock"
    assert clock.arguments == {}


async def test_malformed_tool_arguments_are_kept_raw(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    broken = '{"query": "kafka"'
    server.enqueue(tool_call_reply(("search_notes", broken), ("search_notes", '["kafka"]')))

    response = await make_model().complete(ask(tools=[SEARCH]))

    cut, listed = response.tool_calls
    assert cut.arguments is None
    assert cut.raw_arguments == broken
    assert listed.arguments is None
    assert listed.raw_arguments == '["kafka"]'


# -- structured output -------------------------------------------------------------------


async def test_structured_output_requests_json_schema(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    brief = {"title": "Kafka", "points": ["a log", "partitions"]}
    server.enqueue(json_answer(brief))
    model = make_model()

    response = await model.complete(
        ask(output_schema=BRIEF_SCHEMA, output_schema_name="research brief")
    )

    assert server.bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "research_brief", "schema": BRIEF_SCHEMA, "strict": False},
    }
    assert response.content is not None
    assert json.loads(response.content) == brief
    assert model.structured_mode == "json_schema"


async def test_json_schema_unsupported_falls_back_to_json_object_and_remembers(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    brief = {"title": "Kafka", "points": []}
    server.enqueue(
        error(400, "response_format type json_schema is not supported", param="response_format"),
        json_answer(brief),
        json_answer(brief),
    )
    model = make_model()

    first = await model.complete(ask(output_schema=BRIEF_SCHEMA))
    second = await model.complete(ask(output_schema=BRIEF_SCHEMA))

    assert first.content is not None
    assert json.loads(first.content) == brief
    assert first.attempts == 2
    assert second.attempts == 1
    formats = [body["response_format"] for body in server.bodies]
    assert formats == [
        {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": BRIEF_SCHEMA, "strict": False},
        },
        {"type": "json_object"},
        {"type": "json_object"},
    ]
    # json_object needs the schema in the prompt; it joins the leading system message.
    system = server.bodies[1]["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a researcher.")
    assert '"required":["title","points"]' in system["content"]
    assert model.structured_mode == "json_object"


async def test_no_response_format_support_falls_back_to_prompting(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(
        error(400, "Unknown field: response_format"),
        error(422, "json_object response format not supported"),
        answer('```json\n{"title": "Kafka", "points": []}\n```'),
    )
    model = make_model()

    response = await model.complete(ask(output_schema=BRIEF_SCHEMA))

    assert response.attempts == 3
    assert model.structured_mode == "prompt"
    assert [(n.kind, n.attempt, n.status_code, n.from_mode, n.to_mode) for n in response.trail] == [
        ("step_down", 1, 400, "json_schema", "json_object"),
        ("step_down", 2, 422, "json_object", "prompt"),
    ]
    assert "response_format" not in server.bodies[2]
    assert "JSON Schema" in server.bodies[2]["messages"][0]["content"]
    assert response.content is not None
    assert json.loads(response.content) == {"title": "Kafka", "points": []}


# -- retries -----------------------------------------------------------------------------


async def test_rate_limit_waits_for_retry_after_then_succeeds(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(rate_limited(retry_after=1), answer("after the wait"))

    response = await make_model().complete(ask())

    assert response.content == "after the wait"
    assert response.attempts == 2
    first, second = server.chat_requests
    assert first.status == 429
    waited = second.received_at - first.received_at
    assert 0.95 <= waited < 2.0


def test_retry_after_parses_seconds_dates_and_milliseconds() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after": date}, now=now) == 30.0
    assert parse_retry_after({"retry-after": "Mon, 01 Jan 2001 00:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    policy = RetryPolicy(base_delay_s=0.01, max_retry_after_s=5.0)
    assert 5.0 <= policy.delay(1, retry_after=3600) < 5.01
    assert 0.04 <= RetryPolicy(base_delay_s=0.01).delay(4) <= 0.08


async def test_server_errors_until_give_up(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(server_error(500), server_error(502), server_error(503))

    with pytest.raises(ModelCallError) as caught:
        await make_model(max_retries=2).complete(ask())

    exc = caught.value
    assert exc.kind == "server_error"
    assert exc.retryable
    assert exc.attempts == 3
    assert exc.status_code == 503
    assert "'gpt-4o-mini'" in str(exc)
    assert "gave up after 3 attempts" in str(exc)
    assert len(server.chat_requests) == 3


async def test_timeout_is_retried_then_given_up(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(delayed(answer("too late"), 10), answer("on time"))
    model = make_model(timeout_s=0.3, max_retries=1)

    response = await model.complete(ask())

    assert response.content == "on time"
    assert response.attempts == 2

    server.enqueue(delayed(answer("too late"), 10), delayed(answer("too late"), 10))
    with pytest.raises(ModelCallError) as caught:
        await model.complete(ask())
    assert caught.value.kind == "timeout"
    assert caught.value.retryable
    assert caught.value.attempts == 2
    assert "timeout_s=0.3" in str(caught.value)


async def test_connection_refused_is_a_retryable_connection_error(
    make_model: ModelFactory,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = make_model(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)

    with pytest.raises(ModelCallError) as caught:
        await model.complete(ask())

    assert caught.value.kind == "connection"
    assert caught.value.retryable
    assert caught.value.attempts == 2


# -- errors that are not retried ---------------------------------------------------------


async def test_bad_request_is_not_retried_and_names_the_model(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(error(400, "Invalid value for 'temperature': 7 is above 2", param="temperature"))

    with pytest.raises(ModelCallError) as caught:
        await make_model().complete(ask(temperature=7))

    exc = caught.value
    assert exc.kind == "bad_request"
    assert not exc.retryable
    assert exc.attempts == 1
    assert "'gpt-4o-mini'" in str(exc)
    assert "7 is above 2" in str(exc)
    assert len(server.chat_requests) == 1


async def test_context_length_exceeded(server: OpenAIStubServer, make_model: ModelFactory) -> None:
    server.enqueue(
        error(
            400,
            "This model's maximum context length is 128000 tokens. However, you requested 130000.",
            code="context_length_exceeded",
        )
    )

    with pytest.raises(ModelCallError) as caught:
        await make_model().complete(ask())

    assert caught.value.kind == "context_length"
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, "auth"), (403, "auth"), (404, "not_found"), (422, "bad_request")],
)
async def test_client_errors_have_clear_kinds(
    server: OpenAIStubServer, make_model: ModelFactory, status: int, kind: str
) -> None:
    server.enqueue(error(status, "nope"))

    with pytest.raises(ModelCallError) as caught:
        await make_model(max_retries=3).complete(ask())

    assert caught.value.kind == kind
    assert not caught.value.retryable
    assert caught.value.status_code == status
    assert len(server.chat_requests) == 1


async def test_insufficient_quota_is_not_retried(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(rate_limited(code="insufficient_quota"))

    with pytest.raises(ModelCallError) as caught:
        await make_model().complete(ask())

    assert caught.value.kind == "rate_limited"
    assert not caught.value.retryable


async def test_a_body_that_is_not_a_completion_is_a_clear_error(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(malformed_body("<html>welcome to nginx</html>"))

    with pytest.raises(ModelCallError) as caught:
        await make_model().complete(ask())

    assert caught.value.kind == "bad_response"
    assert "base_url" in str(caught.value)


# -- fallback ----------------------------------------------------------------------------


async def test_fallback_model_after_primary_exhausts_retries(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(server_error(500), server_error(500), answer("from the fallback"))
    model = make_model(max_retries=1, fallback_model="gpt-4o")

    response = await model.complete(ask())

    assert response.used_fallback
    assert response.model == "gpt-4o"
    assert response.content == "from the fallback"
    assert response.attempts == 3
    assert [body["model"] for body in server.bodies] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]
    failed, gave_up, fallback = response.trail
    assert (failed.kind, failed.attempt, failed.status_code, failed.error_kind) == (
        "failed",
        1,
        500,
        "server_error",
    )
    assert failed.delay_s > 0
    assert (gave_up.kind, gave_up.attempt, gave_up.delay_s) == ("failed", 2, 0.0)
    assert fallback == AttemptNote(
        kind="fallback",
        model="gpt-4o-mini",
        attempt=2,
        error_kind="server_error",
        to_model="gpt-4o",
        detail=fallback.detail,
    )
    assert "HTTP 500" in fallback.detail


async def test_fallback_failing_too_reports_both_models(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(*[server_error(500)] * 4)
    model = make_model(max_retries=1, fallback_model="gpt-4o")

    with pytest.raises(ModelCallError) as caught:
        await model.complete(ask())

    exc = caught.value
    assert exc.retryable
    assert exc.attempts == 4
    assert exc.model == "gpt-4o"
    assert "'gpt-4o'" in str(exc)
    assert "'gpt-4o-mini'" in str(exc)


async def test_no_fallback_for_errors_that_are_not_retryable(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(error(400, "bad input"))

    with pytest.raises(ModelCallError):
        await make_model(fallback_model="gpt-4o").complete(ask())

    assert len(server.chat_requests) == 1


# -- usage, cost, secrets ----------------------------------------------------------------


async def test_usage_cached_tokens_and_cost(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(answer("ok", prompt_tokens=1000, completion_tokens=200, cached_tokens=400))

    response = await make_model().complete(ask())

    assert response.usage == TokenUsage(input_tokens=1000, output_tokens=200, cached_tokens=400)
    expected = (600 * 0.15 + 400 * 0.075 + 200 * 0.6) / 1_000_000
    assert PriceTable().cost(response.model, response.usage) == pytest.approx(expected)


async def test_usage_missing_is_counted_locally(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(no_usage(answer("Kafka is a distributed, partitioned commit log.")))
    request = ask()

    response = await make_model().complete(request)

    assert response.usage_source == "estimated"
    assert response.usage == estimate_usage(request, response.content, [])
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


async def test_usage_sent_is_reported_not_estimated(
    server: OpenAIStubServer, make_model: ModelFactory
) -> None:
    server.enqueue(answer("ok", prompt_tokens=7, completion_tokens=0))

    response = await make_model().complete(ask())

    assert response.usage_source == "reported"
    assert response.usage == TokenUsage(input_tokens=7, output_tokens=0)


async def test_api_key_never_appears_in_raw_errors_or_logs(
    server: OpenAIStubServer, make_model: ModelFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.enqueue(
        answer(f"I saw the key {KEY}"),
        server_error(500, f"upstream rejected {KEY}"),
        error(401, f"Incorrect API key provided: {KEY}", code="invalid_api_key"),
    )
    model = make_model(max_retries=1)

    response = await model.complete(ask())
    with pytest.raises(ModelCallError) as caught:
        await model.complete(ask())

    assert server.chat_requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in json.dumps(response.raw)
    assert KEY not in (response.content or "")
    assert "[redacted]" in (response.content or "")
    exc = caught.value
    assert exc.kind == "auth"
    assert KEY_ENV in str(exc)  # names the variable to check, never its value
    assert KEY not in "".join(traceback.format_exception(exc))
    assert KEY not in caplog.text


async def test_api_key_from_a_secrets_file(
    server: OpenAIStubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "openai.key").write_text("sk-from-file\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    settings = ModelSettings(provider="openai", model="gpt-4o-mini", base_url=server.base_url)
    server.enqueue(answer("ok"))

    async with OpenAIChatModel(settings, api_key_file=Path("openai.key"), base_dir=tmp_path) as m:
        await m.complete(ask())

    assert server.chat_requests[0].headers["authorization"] == "Bearer sk-from-file"


def test_a_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(f"{KEY_ENV}_FILE", raising=False)
    settings = ModelSettings(provider="openai", model="gpt-4o", api_key_env=KEY_ENV)

    with pytest.raises(ConfigurationError, match=KEY_ENV):
        OpenAIChatModel(settings)


# -- Azure, factory, other ways to run the server ----------------------------------------


async def test_azure_openai_deployment(server: OpenAIStubServer, make_model: ModelFactory) -> None:
    server.enqueue(answer("from azure"))
    settings = ModelSettings(
        provider="azure",
        model="my-gpt4o-deployment",
        base_url=server.origin,
        api_key_env=KEY_ENV,
        max_output_tokens=64,
    )

    async with OpenAIChatModel(settings, api_version="2024-10-21", retry=FAST) as model:
        response = await model.complete(ask(model="my-gpt4o-deployment"))

    assert model.provider == "azure"
    assert response.content == "from azure"
    (sent,) = server.chat_requests
    assert sent.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert sent.query["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == KEY
    assert sent.body["max_completion_tokens"] == 64


async def test_build_model_and_shared_instances(
    server: OpenAIStubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    remote = ModelSettings(
        provider="openai", model="gpt-4o-mini", base_url=server.base_url, api_key_env=KEY_ENV
    )
    (tmp_path / "brain.py").write_text(
        "from agentledger.llm import reply\n\ndef answer(request):\n    return reply('scripted!')\n"
    )
    local = ModelSettings(provider="scripted", model="scripted", script="brain.py:answer")

    models = build_models({"a": remote, "b": remote.model_copy(), "c": local}, base_dir=tmp_path)

    assert models["a"] is models["b"]
    assert isinstance(models["a"], OpenAIChatModel)
    assert isinstance(models["c"], ScriptedModel)
    server.enqueue(answer("remote"))
    assert (await models["a"].complete(ask())).content == "remote"
    assert (await models["c"].complete(ask())).content == "scripted!"
    await models["a"].aclose()
    with pytest.raises(ConfigurationError, match="no_such_module"):
        build_model(local.model_copy(update={"script": "no_such_module:f"}), base_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="unknown model provider"):
        build_model(ModelSettings(provider="bedrock"))


def test_stub_server_in_a_thread_serves_code_with_its_own_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)

    async def call(base_url: str) -> str | None:
        settings = ModelSettings(
            provider="openai", model="gpt-4o-mini", base_url=base_url, api_key_env=KEY_ENV
        )
        async with OpenAIChatModel(settings) as model:
            return (await model.complete(ask())).content

    with OpenAIStubServer([answer("from a thread")]) as server:
        assert asyncio.run(call(server.base_url)) == "from a thread"
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as reply:
            listed = json.load(reply)
    assert [m["id"] for m in listed["data"]] == ["gpt-4o-mini"]
    server.assert_complete()


def test_stub_server_as_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    script = tmp_path / "replies.json"
    script.write_text(json.dumps([server_error(503).to_json(), answer("from a process").to_json()]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.openai_server", "--script", str(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")

        async def call() -> int:
            settings = ModelSettings(
                provider="openai", model="gpt-4o-mini", base_url=base_url, api_key_env=KEY_ENV
            )
            async with OpenAIChatModel(settings, retry=FAST) as model:
                return (await model.complete(ask())).attempts

        assert asyncio.run(call()) == 2
        origin = base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{origin}/_stub/requests", timeout=5) as reply:
            recorded = json.load(reply)
        assert [r["status"] for r in recorded] == [503, 200]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
