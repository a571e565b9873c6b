"""Built-in tools, referenced from workflow files like any other::

    tools:
      calculator: {function: "agentledger.tools.builtin:calculator"}
      read_file:  {function: "agentledger.tools.builtin:read_file"}
      write_file: {function: "agentledger.tools.builtin:write_file"}
      http_fetch:
        function: "agentledger.tools.builtin:http_fetch"
        policy: {allowed_domains: [docs.python.org]}   # off without it

File tools work inside the sandbox directory only (``AGENTLEDGER_SANDBOX``); a path that
resolves outside it (``..``, an absolute path, a symlink out) is refused. ``http_fetch``
fetches only from the allowed domains (and their subdomains), re-checking every redirect.
"""

from __future__ import annotations

import ast
import hashlib
import math
import operator
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit

import httpx2 as httpx
from pydantic import Field

from agentledger.errors import ToolError
from agentledger.security.policy import domain_allowed
from agentledger.tools.registry import ToolContext, tool

MAX_FILE_BYTES = 256_000

_BINARY: dict[type[ast.operator], Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Any] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Any] = {
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _evaluate(node: ast.AST) -> float | int:
    match node:
        case ast.Expression(body=body):
            return _evaluate(body)
        case ast.Constant(value=value) if isinstance(value, int | float) and not isinstance(
            value, bool
        ):
            return value
        case ast.Name(id=name) if name in _CONSTANTS:
            return _CONSTANTS[name]
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _UNARY[type(op)](_evaluate(operand))  # type: ignore[no-any-return]
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _evaluate(left), _evaluate(right)
            if isinstance(op, ast.Pow) and (abs(b) > 1000 or abs(a) > 1e6):
                raise ToolError("exponent too large", kind="invalid_arguments")
            return _BINARY[type(op)](a, b)  # type: ignore[no-any-return]
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in _FUNCTIONS:
            return _FUNCTIONS[name](*(_evaluate(a) for a in args))  # type: ignore[no-any-return]
    raise ToolError(
        f"unsupported expression {ast.unparse(node)!r}: use numbers, + - * / // % **, "
        f"parentheses, {', '.join(sorted(_FUNCTIONS))}, pi and e",
        kind="invalid_arguments",
    )


@tool(description="Evaluate an arithmetic expression exactly as written, e.g. '(3.5 * 12) / 7'")
def calculator(expression: Annotated[str, Field(min_length=1, max_length=500)]) -> dict[str, Any]:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an expression: {exc.msg}", kind="invalid_arguments") from None
    try:
        value = _evaluate(tree)
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        raise ToolError(
            f"cannot evaluate {expression!r}: {exc}", kind="invalid_arguments"
        ) from None
    return {"expression": expression, "value": value}


def _inside(sandbox: Path, path: str) -> Path:
    root = sandbox.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ToolError(
            f"path {path!r} is outside the sandbox; use a relative path inside it",
            kind="not_allowed",
        )
    return target


@tool(description="Read a UTF-8 text file from the sandbox directory")
def read_file(
    path: Annotated[str, Field(min_length=1, max_length=500)], ctx: ToolContext
) -> dict[str, Any]:
    target = _inside(ctx.sandbox, path)
    if not target.is_file():
        raise ToolError(f"no file {path!r} in the sandbox", kind="not_found")
    data = target.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise ToolError(
            f"{path!r} is {len(data)} bytes; the limit is {MAX_FILE_BYTES}", kind="too_large"
        )
    return {"path": path, "content": data.decode("utf-8", errors="replace"), "bytes": len(data)}


@tool(
    description="Write a UTF-8 text file in the sandbox directory (replaces an existing file)",
    side_effect=True,
    risk="write",
    safe_to_retry=True,  # writing the same content again leaves the same file
)
def write_file(
    path: Annotated[str, Field(min_length=1, max_length=500)],
    content: Annotated[str, Field(max_length=MAX_FILE_BYTES)],
    ctx: ToolContext,
) -> dict[str, Any]:
    target = _inside(ctx.sandbox, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{ctx.idempotency_key[:8]}.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(target)  # atomic: readers never see half a file
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    return {"path": path, "bytes": len(content.encode()), "sha256": digest}


MAX_FETCH_BYTES = 1_000_000
MAX_FETCH_CHARS = 200_000
MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 15.0

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d])", re.IGNORECASE
)
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class _Text(HTMLParser):
    """The text a person would see: no scripts, styles, comments or hidden elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []  # open tags whose content is not shown
        self.hidden = 0  # hidden elements and comments dropped

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and not self.skipping:
                self.parts.append("\n")
            return
        style = " ".join(v or "" for k, v in attrs if k == "style")
        hidden = any(k == "hidden" for k, _ in attrs) or bool(_HIDDEN_STYLE.search(style))
        if self.skipping or tag in ("script", "style", "template", "noscript") or hidden:
            self.hidden += hidden and not self.skipping
            self.skipping.append(tag)
        elif tag in ("p", "div", "li", "tr", "h1", "h2", "h3", "h4", "section"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)

    def handle_comment(self, data: str) -> None:
        self.hidden += 1

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def html_text(html: str) -> tuple[str, int]:
    """Visible text of an HTML page, and how many hidden pieces were dropped."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return parser.text(), parser.hidden


def _check_url(url: str, allowed: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"{url[:200]!r} is not an http(s) URL", kind="invalid_arguments")
    if not domain_allowed(parts.hostname, allowed):
        raise ToolError(
            f"host {parts.hostname!r} is not an allowed domain ({', '.join(allowed)})",
            kind="not_allowed",
        )


async def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FETCH_BYTES:
        raise ToolError(
            f"the response is {declared} bytes; the limit is {MAX_FETCH_BYTES}", kind="too_large"
        )
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_FETCH_BYTES:
            raise ToolError(
                f"the response is over the {MAX_FETCH_BYTES}-byte limit", kind="too_large"
            )
    return bytes(body)


@tool(
    description="Fetch a web page or text document (allowed domains only) and return its text",
    # A URL may hold an address the primary log masks (an IP host); never a secret: a key
    # in a URL would go to the host it names, so it reaches the host as its placeholder.
    raw_values={"url": ("ip",)},
    timeout_s=60.0,
)
async def http_fetch(
    url: Annotated[str, Field(min_length=8, max_length=2000)], ctx: ToolContext
) -> dict[str, Any]:
    """The text of ``url``. Off unless the tool's policy lists ``allowed_domains``; every
    redirect is checked against them too. The result is untrusted data."""
    allowed = ctx.allowed_domains
    if not allowed:
        raise ToolError(
            "http_fetch is off: list the domains it may fetch from in the workflow "
            "(tools.<name>.policy.allowed_domains)",
            kind="not_allowed",
        )
    timeout = httpx.Timeout(FETCH_TIMEOUT_S)
    async with httpx.AsyncClient(
        follow_redirects=False, timeout=timeout, trust_env=False
    ) as client:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(current, allowed)
            try:
                async with client.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    body = await _read_capped(response)
                    status, content_type = (
                        response.status_code,
                        response.headers.get("content-type", ""),
                    )
                    encoding = response.encoding or "utf-8"
                    break
            except httpx.TimeoutException:
                raise ToolError(f"fetching {current[:200]!r} timed out", kind="timeout") from None
            except httpx.HTTPError as exc:
                raise ToolError(
                    f"fetching {current[:200]!r} failed: {type(exc).__name__}: {exc}",
                    kind="fetch_error",
                ) from None
        else:
            raise ToolError(f"more than {MAX_REDIRECTS} redirects", kind="fetch_error")
    text = body.decode(encoding, errors="replace")
    hidden = 0
    if "html" in content_type.lower():
        text, hidden = html_text(text)
    return {
        "url": current,
        "status": status,
        "content_type": content_type.split(";")[0].strip(),
        "text": text[:MAX_FETCH_CHARS],
        "truncated": len(text) > MAX_FETCH_CHARS,
        "hidden_removed": hidden,
    }
