"""Arize Phoenix, a real OTLP receiver with storage and a query API, started on loopback.

Phoenix lives in its own virtualenv (``.venv-phoenix``, created by ``.ci/run``) because
its dependency tree is large and pins versions of its own. The fixture fails, never skips,
when it cannot start it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHOENIX = (
    Path(os.environ.get("AGENTLEDGER_PHOENIX_VENV", ROOT / ".venv-phoenix")) / "bin" / "phoenix"
)
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Phoenix:
    url: str

    @property
    def traces_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as r:
            return json.loads(r.read())

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span Phoenix stored in ``project`` (empty when the project does not exist)."""
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            try:
                page = self.get(f"/v1/projects/{project}/spans?limit=1000{cursor}")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return []
                raise
            out += page["data"]
            if not page.get("next_cursor"):
                return out
            cursor = f"&cursor={page['next_cursor']}"

    def wait_spans(self, project: str, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Phoenix ingests asynchronously: poll its API until ``count`` spans are stored."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(project)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    if not PHOENIX.exists():
        pytest.fail(
            f"Arize Phoenix is not installed at {PHOENIX}: create its virtualenv with "
            "`python3 -m venv .venv-phoenix && .venv-phoenix/bin/pip install arize-phoenix` "
            "(.ci/run does this)"
        )
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))},
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc),
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (work / "phoenix.log").open("wb")
    proc = subprocess.Popen(
        [str(PHOENIX), "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT
    )
    server = Phoenix(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"Phoenix exited with {proc.returncode}: "
                    + (work / "phoenix.log").read_text(errors="replace")[-2000:]
                )
            try:
                server.get("/v1/projects")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"Phoenix did not answer on {server.url} in {START_TIMEOUT_S:.0f} s"
                    )
                time.sleep(0.3)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
