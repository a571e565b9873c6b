"""Built-in tools, referenced from workflow files like any other::

    tools:
      calculator: {function: "agentledger.tools.builtin:calculator"}
      read_file:  {function: "agentledger.tools.builtin:read_file"}
      write_file: {function: "agentledger.tools.builtin:write_file"}

File tools work inside the sandbox directory only (``AGENTLEDGER_SANDBOX``); a path that
resolves outside it (``..``, an absolute path, a symlink out) is refused.
"""

from __future__ import annotations

import ast
import hashlib
import math
import operator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from agentledger.errors import ToolError
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
