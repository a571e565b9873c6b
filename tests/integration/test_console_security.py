"""The console's guard: loopback by default, the token off loopback, CSRF on decisions.
Each test talks HTTP to a real `agentledger ui` process."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agentledger.cli import main
from tests.support.console import start_console

pytestmark = pytest.mark.integration


def request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(
                raw
            ) if r.headers.get_content_type() == "application/json" else raw.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_refuses_a_non_loopback_host_without_a_token(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(
        ["--db", str(tmp_path / "l.db"), "ui", "--host", "0.0.0.0"], out=io.StringIO(), err=err
    )
    assert code == 2
    assert "refusing to bind the console to 0.0.0.0" in err.getvalue()
    assert "--token" in err.getvalue()


def test_decisions_need_the_csrf_value_and_a_loopback_host(tmp_path: Path) -> None:
    with start_console(tmp_path) as console:
        status, body = request(console.url + "/api/runs")
        assert status == 200 and body["runs"] == []
        # a page on another name (DNS rebinding) cannot read the console
        status, body = request(console.url + "/api/runs", headers={"Host": "evil.example:80"})
        assert status == 403
        # no CSRF header: refused before anything is looked up
        status, body = request(
            console.url + "/api/approvals/ap-1",
            method="POST",
            body={"decision": "approve", "task_id": "t"},
        )
        assert status == 403 and "CSRF" in body["error"]
        page = request(console.url + "/")[1]
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        headers = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
        status, body = request(
            console.url + "/api/approvals/ap-1",
            method="POST",
            headers=headers | {"Origin": "http://evil.example"},
            body={"decision": "approve"},
        )
        assert status == 403 and "cross-origin" in body["error"]
        # with the CSRF value, bad input gets a clear answer, not a crash
        status, body = request(
            console.url + "/api/approvals/ap-1",
            method="POST",
            headers=headers,
            body={"decision": "maybe"},
        )
        assert status == 400 and "approve" in body["error"]
        status, body = request(
            console.url + "/api/approvals/ap-1",
            method="POST",
            headers=headers,
            body={"decision": "deny"},
        )
        assert status == 400 and "reason" in body["error"]
        status, body = request(
            console.url + "/api/approvals/ap-1",
            method="POST",
            headers=headers,
            body={"decision": "approve"},
        )
        assert status == 409 and "no approval 'ap-1'" in body["error"]
        status, body = request(
            console.url + "/api/approvals/ap-1",
            method="POST",
            headers=headers,
            body={"decision": "approve", "task_id": "nope"},
        )
        assert status == 409 and "nope" in body["error"]
        status, body = request(console.url + "/api/runs/nope?until=x")
        assert status == 404
        status, body = request(console.url + "/api/runs/nope/stream?after=x")
        assert status == 400 and "seq" in body["error"]
        assert console.process.poll() is None  # still serving


def test_with_a_token_every_request_needs_it(tmp_path: Path) -> None:
    with start_console(tmp_path, "--token", "s3cret-token") as console:
        assert request(console.url + "/api/runs")[0] == 403
        assert request(console.url + "/")[0] == 403
        assert (
            request(console.url + "/api/runs", headers={"Authorization": "Bearer wrong"})[0] == 403
        )
        status, body = request(
            console.url + "/api/runs", headers={"Authorization": "Bearer s3cret-token"}
        )
        assert status == 200 and body["runs"] == []
        # opening /?token=... once sets an HttpOnly cookie and drops the token from the URL
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(console.url + "/?token=s3cret-token", timeout=10) as r:
            assert r.status == 200 and r.url == console.url + "/"
            assert "agentledger console" in r.read().decode()
        with opener.open(console.url + "/api/runs", timeout=10) as r:
            assert r.status == 200
    assert not (tmp_path / "console.json").exists()  # withdrawn on shutdown
