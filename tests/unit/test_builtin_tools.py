from pathlib import Path

import pytest

from agentledger.errors import ToolError
from agentledger.tools import ToolContext
from agentledger.tools.builtin import calculator, read_file, write_file


def ctx(sandbox: Path) -> ToolContext:
    return ToolContext("t", "s", "agent", "c1", "0123456789abcdef", sandbox)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(3.5 * 12) / 7", 6.0),
        ("2 ** 10", 1024),
        ("-7 // 2", -4),
        ("sqrt(16) + max(1, 5)", 9.0),
        ("round(pi, 2)", 3.14),
    ],
)
async def test_calculator_evaluates_arithmetic(expression: str, value: float, tmp_path: Path):
    assert await calculator.run({"expression": expression}, ctx(tmp_path)) == {
        "expression": expression,
        "value": value,
    }


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "unsupported expression"),
        ("open('/etc/passwd')", "unsupported expression"),
        ("1 / 0", "division by zero"),
        ("9 ** 9999", "exponent too large"),
        ("1 +", "not an expression"),
        ("[1, 2]", "unsupported expression"),
    ],
)
async def test_calculator_refuses_anything_but_arithmetic(
    expression: str, message: str, tmp_path: Path
):
    with pytest.raises(ToolError, match=message) as info:
        await calculator.run({"expression": expression}, ctx(tmp_path))
    assert info.value.kind == "invalid_arguments"


async def test_files_round_trip_inside_the_sandbox(tmp_path: Path):
    written = await write_file.run({"path": "notes/a.txt", "content": "hello"}, ctx(tmp_path))
    assert written["bytes"] == 5
    assert (tmp_path / "notes" / "a.txt").read_text() == "hello"
    assert (await read_file.run({"path": "notes/a.txt"}, ctx(tmp_path)))["content"] == "hello"
    assert write_file.side_effect and write_file.risk == "write"


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b.txt"])
async def test_paths_outside_the_sandbox_are_refused(path: str, tmp_path: Path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with pytest.raises(ToolError, match="outside the sandbox"):
        await write_file.run({"path": path, "content": "x"}, ctx(sandbox))
    with pytest.raises(ToolError, match="outside the sandbox"):
        await read_file.run({"path": path}, ctx(sandbox))
    assert not (tmp_path / "escape.txt").exists()


async def test_a_symlink_out_of_the_sandbox_is_refused(tmp_path: Path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (tmp_path / "secret.txt").write_text("s3cret")
    (sandbox / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ToolError, match="outside the sandbox"):
        await read_file.run({"path": "link.txt"}, ctx(sandbox))
