"""The real model: any server speaking the OpenAI chat-completions API.

OpenAI itself, Azure OpenAI (``provider="azure"``), and the OpenAI-compatible servers
(vLLM, Ollama, llama.cpp server, LiteLLM proxy) through ``base_url``::

    model = OpenAIChatModel(ModelSettings(provider="openai", model="gpt-4o-mini"))
    response = await model.complete(request)
    await model.aclose()

What it does beyond one HTTP call:

* retries 429, 5xx, timeouts and connection errors itself (the openai client is built with
  ``max_retries=0``) with exponential backoff and jitter, honouring ``Retry-After``, so the
  attempts are counted into ``ModelResponse.attempts`` and each one that failed, each
  structured-output step-down and the switch to a fallback is an ``AttemptNote`` in
  ``ModelResponse.trail`` (or ``ModelCallError.trail``), which the runtime records as events;
* a server that sends no ``usage`` gets its tokens counted locally
  (``usage_source="estimated"``), so budgets still hold;
* after the retries are spent, tries ``settings.fallback_model`` once through the same
  policy (``used_fallback=True``), else raises ``ModelCallError(retryable=True)``;
* structured output asks for ``response_format=json_schema``; a server that rejects it is
  asked for ``json_object`` and then for JSON by instruction alone, and the instance
  remembers how far it had to step down;
* the API key is read from the variable named by ``api_key_env`` (else from the file that
  ``<VAR>_FILE`` names, or an explicit ``api_key_file``) and is redacted from every error
  message, raw body and answer this module produces.

Azure OpenAI: ``model`` is the deployment name, ``base_url`` the resource endpoint
(``https://NAME.openai.azure.com``, or ``AZURE_OPENAI_ENDPOINT``), the key comes from
``AZURE_OPENAI_API_KEY`` unless ``api_key_env`` names another variable, and the API version
from the ``api_version`` argument or ``OPENAI_API_VERSION``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai
import orjson
from pydantic import JsonValue

from agentledger.errors import ConfigurationError, ModelError
from agentledger.llm.base import (
    AttemptNote,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    ToolSpec,
    canonical_json,
)
from agentledger.llm.tokens import estimate_usage
from agentledger.schemas.llm import RecordedToolCall, TokenUsage

__all__ = ["ModelCallError", "OpenAIChatModel", "RetryPolicy", "parse_retry_after"]

log = logging.getLogger(__name__)

StructuredMode = Literal["json_schema", "json_object", "prompt"]
_STEP_DOWN: dict[StructuredMode, StructuredMode] = {
    "json_schema": "json_object",
    "json_object": "prompt",
    "prompt": "prompt",
}
_MODE_ORDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "prompt")
# Sent to servers that need no key (a local vLLM or Ollama) when none is configured.
_NO_KEY = "no-key-configured"
_OPENAI_URL = "https://api.openai.com/v1"
_CONTEXT_MARKERS = (
    "context_length",
    "context length",
    "maximum context",
    "context window",
    "too many tokens",
    "prompt is too long",
)
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


class ModelCallError(ModelError):
    """A model call failed; carries what the runtime records in ``LlmCallFailed``.

    ``kind`` is one of ``bad_request``, ``context_length``, ``auth``, ``not_found``,
    ``rate_limited``, ``server_error``, ``timeout``, ``connection``, ``bad_response``
    (a 200 whose body is not a chat completion), ``model_error`` (anything else).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retryable: bool,
        model: str,
        attempts: int,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, kind=kind, retryable=retryable)
        self.model = model
        self.attempts = attempts
        self.status_code = status_code


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts. The number of retries is ``settings.max_retries``.

    The n-th retry waits ``min(max_delay_s, base_delay_s * 2**(n-1))`` with "equal jitter"
    (between half and all of it). A ``Retry-After`` from the server replaces that, capped at
    ``max_retry_after_s`` so one header cannot park an agent for an hour.
    """

    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 60.0

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        if retry_after is not None:
            jitter = random.uniform(0, self.base_delay_s / 4)
            return min(retry_after, self.max_retry_after_s) + jitter
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry_number - 1))
        return backoff / 2 + random.uniform(0, backoff / 2)


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, or ``Retry-After`` as seconds
    or an HTTP date. None when absent or unreadable; never negative."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    header = headers.get("retry-after")
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass
class _Attempts:
    """HTTP requests made for one ``complete()``, across retries, step-downs and fallback."""

    count: int = 0
    notes: list[AttemptNote] = field(default_factory=list)


@dataclass
class _Failure:
    kind: str
    retryable: bool
    reason: str
    status_code: int | None = None
    retry_after: float | None = None


class OpenAIChatModel:
    """A ``ChatModel`` over the OpenAI chat-completions API. See the module docstring.

    ``api_key_file`` (a secrets file holding the key) wins over ``api_key_env``; relative
    paths resolve against ``base_dir``. ``retry`` tunes the waits (tests make them tiny).
    Call ``aclose()`` (or use ``async with``) when done, to close the HTTP connections.
    """

    def __init__(
        self,
        settings: ModelSettings,
        *,
        api_key_file: Path | None = None,
        api_version: str | None = None,
        retry: RetryPolicy | None = None,
        base_dir: Path | None = None,
    ) -> None:
        if settings.provider not in ("openai", "azure"):
            raise ConfigurationError(
                f"OpenAIChatModel serves providers 'openai' and 'azure', not "
                f"{settings.provider!r}; use agentledger.llm.factory.build_model"
            )
        self.provider: str = settings.provider
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.structured_mode: StructuredMode = "json_schema"
        self._api_key = _resolve_api_key(settings, api_key_file, base_dir)
        self._where = _describe_endpoint(settings)
        self._client = self._build_client(api_version)
        official = settings.provider == "azure" or settings.base_url is None
        official = official or "api.openai.com" in (settings.base_url or "")
        # OpenAI deprecated max_tokens (reasoning models reject it); many compatible servers
        # only know max_tokens.
        self._max_tokens_param = "max_completion_tokens" if official else "max_tokens"

    def _build_client(self, api_version: str | None) -> openai.AsyncOpenAI:
        s = self.settings
        try:
            if s.provider == "azure":
                endpoint = s.base_url or os.environ.get("AZURE_OPENAI_ENDPOINT")
                version = api_version or os.environ.get("OPENAI_API_VERSION")
                if not endpoint or not version:
                    raise ConfigurationError(
                        f"Azure model {s.model!r} needs base_url (or AZURE_OPENAI_ENDPOINT) "
                        "set to the resource endpoint and an API version (api_version, or "
                        "OPENAI_API_VERSION)"
                    )
                return openai.AsyncAzureOpenAI(
                    azure_endpoint=endpoint,
                    api_version=version,
                    api_key=self._api_key,
                    timeout=s.timeout_s,
                    max_retries=0,
                )
            return openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=s.base_url,
                timeout=s.timeout_s,
                max_retries=0,
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise ConfigurationError(
                f"cannot set up model {s.model!r} at {self._where}: {self._redact(str(exc))}"
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the call --

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer one agent step; raises ``ModelCallError`` when the model cannot."""
        primary = request.model or self.settings.model
        attempts = _Attempts()
        try:
            body = await self._call_with_retries(primary, request, attempts)
            return self._response(body, primary, request, attempts, used_fallback=False)
        except ModelCallError as exc:
            fallback = self.settings.fallback_model
            if not exc.retryable or not fallback or fallback == primary:
                exc.trail = attempts.notes
                raise
            detail = str(exc)[:300]
            attempts.notes += [
                AttemptNote(
                    kind="failed",
                    model=primary,
                    attempt=attempts.count,
                    error_kind=exc.kind,
                    status_code=exc.status_code,
                    detail=detail,
                ),
                AttemptNote(
                    kind="fallback",
                    model=primary,
                    attempt=attempts.count,
                    error_kind=exc.kind,
                    to_model=fallback,
                    detail=detail,
                ),
            ]
            log.warning(
                "model %r at %s failed (%s) after %d attempts; trying fallback model %r",
                primary,
                self._where,
                exc.kind,
                exc.attempts,
                fallback,
            )
            try:
                body = await self._call_with_retries(fallback, request, attempts)
            except ModelCallError as fallback_exc:
                error = ModelCallError(
                    f"{fallback_exc} (fallback after primary model {primary!r} failed: {exc})",
                    kind=fallback_exc.kind,
                    retryable=fallback_exc.retryable,
                    model=fallback,
                    attempts=attempts.count,
                    status_code=fallback_exc.status_code,
                )
                error.trail = attempts.notes
                raise error from None
            return self._response(body, fallback, request, attempts, used_fallback=True)

    async def _call_with_retries(
        self, model: str, request: ModelRequest, attempts: _Attempts
    ) -> dict[str, Any]:
        retries = 0
        while True:
            mode = self.structured_mode if request.output_schema is not None else None
            attempts.count += 1
            try:
                raw = await self._client.chat.completions.with_raw_response.create(
                    **self._request_body(model, request, mode)
                )
            except openai.APIStatusError as exc:
                if mode is not None and mode != "prompt" and _rejects_response_format(exc):
                    attempts.notes.append(self._step_down(mode, model, exc, attempts.count))
                    continue
                failure = self._classify_status(exc, model)
            except openai.APITimeoutError:
                failure = _Failure(
                    "timeout", True, f"no answer within timeout_s={self.settings.timeout_s}"
                )
            except openai.APIConnectionError as exc:
                cause = exc.__cause__
                detail = f": {type(cause).__name__}: {cause}" if cause else ""
                failure = _Failure("connection", True, f"cannot connect{self._redact(detail)}")
            except openai.OpenAIError as exc:
                reason = f"{type(exc).__name__}: {self._redact(str(exc))[:300]}"
                failure = _Failure("model_error", False, reason)
            else:
                return self._decode(raw.content, model, attempts.count)
            if not failure.retryable or retries >= self.settings.max_retries:
                raise self._error(failure, model, attempts.count, gave_up=failure.retryable)
            retries += 1
            delay = self.retry.delay(retries, failure.retry_after)
            attempts.notes.append(
                AttemptNote(
                    kind="failed",
                    model=model,
                    attempt=attempts.count,
                    error_kind=failure.kind,
                    status_code=failure.status_code,
                    retry_after_s=failure.retry_after,
                    delay_s=round(delay, 3),
                    detail=failure.reason[:300],
                )
            )
            log.warning(
                "model %r at %s: %s; retry %d of %d in %.2fs",
                model,
                self._where,
                failure.kind,
                retries,
                self.settings.max_retries,
                delay,
            )
            await asyncio.sleep(delay)

    def _step_down(
        self, mode: StructuredMode, model: str, exc: openai.APIStatusError, attempt: int
    ) -> AttemptNote:
        lower = _STEP_DOWN[mode]
        if _MODE_ORDER.index(lower) > _MODE_ORDER.index(self.structured_mode):
            self.structured_mode = lower
        said = self._redact(_server_message(exc))[:200]
        log.warning(
            "model %r at %s rejected response_format %r (%s); using %r from now on",
            model,
            self._where,
            mode,
            said,
            self.structured_mode,
        )
        return AttemptNote(
            kind="step_down",
            model=model,
            attempt=attempt,
            status_code=exc.status_code,
            from_mode=mode,
            to_mode=self.structured_mode,
            detail=f"HTTP {exc.status_code}: {said}",
        )

    # -- request --

    def _request_body(
        self, model: str, request: ModelRequest, mode: StructuredMode | None
    ) -> dict[str, Any]:
        messages = [_message_param(m) for m in request.messages]
        body: dict[str, Any] = {"model": model, "messages": messages}
        if request.tools:
            body["tools"] = [_tool_param(t) for t in request.tools]
        temperature = request.temperature
        if temperature is None:
            temperature = self.settings.temperature
        if temperature is not None:
            body["temperature"] = temperature
        max_tokens = request.max_output_tokens or self.settings.max_output_tokens
        if max_tokens is not None:
            body[self._max_tokens_param] = max_tokens
        schema = request.output_schema
        if schema is not None and mode is not None:
            name = _schema_name(request.output_schema_name)
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": False},
                }
            else:
                if mode == "json_object":
                    body["response_format"] = {"type": "json_object"}
                body["messages"] = _with_instruction(messages, _schema_instruction(schema, name))
        return body

    # -- response --

    def _decode(self, content: bytes, model: str, attempts: int) -> dict[str, Any]:
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(choices, list) or not choices:
            snippet = self._redact(content[:200].decode("utf-8", "replace"))
            raise self._error(
                _Failure(
                    "bad_response",
                    False,
                    f"the answer is not a chat completion ({snippet!r}); is base_url the "
                    "server's OpenAI-compatible /v1 endpoint?",
                    status_code=200,
                ),
                model,
                attempts,
                gave_up=False,
            )
        # A server (or a model) echoing the key must not carry it into the event log.
        return self._redact_json(body)

    def _response(
        self,
        body: dict[str, Any],
        model: str,
        request: ModelRequest,
        attempts: _Attempts,
        *,
        used_fallback: bool,
    ) -> ModelResponse:
        choice = _object(body["choices"][0])
        message = _object(choice.get("message"))
        content = _text(message.get("content"))
        prompted = request.output_schema is not None and self.structured_mode == "prompt"
        if content is not None and prompted:
            match = _FENCE.match(content)
            content = match.group("body") if match else content
        raw_calls = message.get("tool_calls")
        calls = [
            _tool_call(i, call)
            for i, call in enumerate(raw_calls if isinstance(raw_calls, list) else [])
            if isinstance(call, dict)
        ]
        finish = choice.get("finish_reason")
        usage = _usage(body.get("usage"))
        estimated = usage is None
        if usage is None:  # some servers send none: count locally rather than go blind
            usage = estimate_usage(request, content, calls)
        reported = body.get("model")
        return ModelResponse(
            content=content,
            tool_calls=calls,
            finish_reason=finish if isinstance(finish, str) else None,
            # The configured name (an Azure deployment, a local alias); the server's own
            # name for the model is ``reported_model``, which Azure calls are priced by.
            model=model,
            usage=usage,
            usage_source="estimated" if estimated else "reported",
            reported_model=reported if isinstance(reported, str) and reported else None,
            attempts=attempts.count,
            used_fallback=used_fallback,
            raw=body,
            trail=attempts.notes,
        )

    # -- errors --

    def _classify_status(self, exc: openai.APIStatusError, model: str) -> _Failure:
        status = exc.status_code
        said = self._redact(_server_message(exc))[:300]
        code = exc.code or ""
        key_hint = self.settings.api_key_env or (
            "AZURE_OPENAI_API_KEY" if self.provider == "azure" else "OPENAI_API_KEY"
        )
        if status == 413 or (status in (400, 422) and _is_context_length(code, said)):
            reason = f"the prompt exceeds the model's context window (HTTP {status}): {said}"
            return _Failure("context_length", False, reason, status)
        rejected = f"request rejected (HTTP {status}): {said}"
        if status in (400, 422):
            return _Failure("bad_request", False, rejected, status)
        if status == 401:
            reason = f"the API key was rejected (HTTP 401): {said}; check the key in {key_hint}"
            return _Failure("auth", False, reason, status)
        if status == 403:
            reason = f"permission denied (HTTP 403): {said}; check the key's access to the model"
            return _Failure("auth", False, reason, status)
        if status == 404:
            reason = f"not found (HTTP 404): {said}; check the model name and base_url"
            return _Failure("not_found", False, reason, status)
        if status == 429:
            wait = parse_retry_after(exc.response.headers)
            if code == "insufficient_quota":
                reason = f"quota exhausted (HTTP 429): {said}; check the account's billing"
                return _Failure("rate_limited", False, reason, status)
            return _Failure("rate_limited", True, f"rate limited (HTTP 429): {said}", status, wait)
        if status == 408:
            return _Failure("timeout", True, f"server timed out (HTTP 408): {said}", status)
        if status == 409 or status >= 500:
            wait = parse_retry_after(exc.response.headers)
            reason = f"server error (HTTP {status}): {said}"
            return _Failure("server_error", True, reason, status, wait)
        return _Failure("bad_request", False, rejected, status)

    def _error(
        self, failure: _Failure, model: str, attempts: int, *, gave_up: bool
    ) -> ModelCallError:
        suffix = f" (gave up after {attempts} attempts)" if gave_up else ""
        return ModelCallError(
            f"model {model!r} at {self._where}: {failure.reason}{suffix}",
            kind=failure.kind,
            retryable=failure.retryable,
            model=model,
            attempts=attempts,
            status_code=failure.status_code,
        )

    def _redact(self, text: str) -> str:
        # A short dummy key ("x" for a local server) is no secret, and replacing it would
        # mangle ordinary text.
        if len(self._api_key) >= 8 and self._api_key != _NO_KEY and self._api_key in text:
            return text.replace(self._api_key, "[redacted]")
        return text

    def _redact_json(self, body: dict[str, Any]) -> dict[str, Any]:
        text = orjson.dumps(body).decode()
        redacted = self._redact(text)
        return body if redacted == text else _object(orjson.loads(redacted))


# -- helpers -----------------------------------------------------------------------------


def _resolve_api_key(settings: ModelSettings, key_file: Path | None, base_dir: Path | None) -> str:
    """The key from the secrets file, else the env var (or ``<VAR>_FILE``); never logged."""
    if key_file is not None:
        path = key_file if key_file.is_absolute() or base_dir is None else base_dir / key_file
        return _read_key_file(path, f"api_key_file for model {settings.model!r}")
    default_env = "AZURE_OPENAI_API_KEY" if settings.provider == "azure" else "OPENAI_API_KEY"
    env = settings.api_key_env or default_env
    key = os.environ.get(env, "").strip()
    if key:
        return key
    file_var = os.environ.get(f"{env}_FILE")
    if file_var:
        return _read_key_file(Path(file_var), f"{env}_FILE")
    if settings.provider == "openai" and settings.base_url and not settings.api_key_env:
        return _NO_KEY  # a local server that needs no key
    raise ConfigurationError(
        f"model {settings.model!r} ({settings.provider}) needs an API key: set the environment "
        f"variable {env} (or {env}_FILE to a file holding it), or name another variable "
        "with model.api_key_env"
    )


def _read_key_file(path: Path, what: str) -> str:
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} at {path}: {exc.strerror}") from None
    if not key:
        raise ConfigurationError(f"{what} at {path} is empty; put the API key in it")
    return key


def _describe_endpoint(settings: ModelSettings) -> str:
    """The endpoint for messages, without userinfo or query (they may hold credentials)."""
    url = settings.base_url
    if not url:
        return "Azure OpenAI" if settings.provider == "azure" else _OPENAI_URL
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _message_param(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content or "",
        }
    param: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        param["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {
                    "name": call.tool,
                    "arguments": (
                        canonical_json(call.arguments)
                        if call.arguments is not None
                        else call.raw_arguments or "{}"
                    ),
                },
            }
            for call in message.tool_calls
        ]
    elif message.content is None:
        param["content"] = ""
    if message.name:
        param["name"] = message.name
    return param


def _tool_param(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def _schema_name(name: str | None) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$.
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", name or "output")[:64]
    return cleaned or "output"


def _schema_instruction(schema: Mapping[str, Any], name: str) -> str:
    return (
        "Answer with one JSON object only: no prose, no code fences. "
        f"It must match this JSON Schema (named {name}):\n{canonical_json(schema)}"
    )


def _with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    # Merged into the leading system message: some chat templates (llama.cpp) refuse a
    # system message anywhere but first.
    if messages and messages[0]["role"] == "system":
        first = messages[0]
        merged = {**first, "content": f"{first['content']}\n\n{instruction}".strip()}
        return [merged, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _rejects_response_format(exc: openai.APIStatusError) -> bool:
    if exc.status_code not in (400, 422):
        return False
    if exc.param == "response_format":
        return True
    said = re.sub(r"[\s-]+", "_", _server_message(exc).lower())
    return any(word in said for word in ("response_format", "json_schema", "json_object"))


def _is_context_length(code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own words: OpenAI's ``error.message``, FastAPI's ``detail``, or the body."""
    body = exc.body
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
        return canonical_json(body)
    if isinstance(body, str) and body:
        return body
    return exc.response.reason_phrase or f"HTTP {exc.status_code}"


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as some servers send
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(t for t in texts if isinstance(t, str))
    return str(content)


def _tool_call(index: int, call: dict[str, Any]) -> RecordedToolCall:
    function = _object(call.get("function"))
    call_id = call.get("id")
    name = function.get("name")
    raw = function.get("arguments")
    arguments: dict[str, JsonValue] | None = None
    raw_arguments: str | None = None
    if isinstance(raw, dict):  # a few servers send the object itself
        arguments = raw
    elif raw is None or (isinstance(raw, str) and not raw.strip()):
        arguments = {}  # a call without arguments
    else:
        text = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            arguments = parsed
        else:
            raw_arguments = text  # kept so the runtime can reject it clearly
    return RecordedToolCall(
        call_id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
        tool=name if isinstance(name, str) else "",
        arguments=arguments,
        raw_arguments=raw_arguments,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _usage(data: Any) -> TokenUsage | None:
    """The server's token counts; None when it sent no usable ``usage`` block."""
    if not isinstance(data, dict) or not any(
        isinstance(data.get(k), int) for k in ("prompt_tokens", "completion_tokens")
    ):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return TokenUsage(
        input_tokens=_count(data.get("prompt_tokens")),
        output_tokens=_count(data.get("completion_tokens")),
        cached_tokens=_count(cached),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
