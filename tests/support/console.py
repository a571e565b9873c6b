"""The web console (`agentledger ui`) in its own process, and headless Chromium to look at it.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright (no browser download).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("AGENTLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FOUND = Path(CHROMIUM).exists()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Console:
    url: str
    home: Path
    process: subprocess.Popen[bytes]

    @property
    def ledger(self) -> Path:
        return self.home / "ledger.db"


@contextmanager
def start_console(home: Path, *extra: str, timeout_s: float = 30.0) -> Iterator[Console]:
    """``agentledger ui --port 0`` over ``home``'s ledger; its address comes from the
    discovery file it writes."""
    env = {**os.environ, "AGENTLEDGER_HOME": str(home)}
    discovery = home / "console.json"
    discovery.unlink(missing_ok=True)
    log = (home / "console.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentledger.cli", "ui", "--port", "0", *extra],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not discovery.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the console did not start: " + (home / "console.log").read_text())
            time.sleep(0.05)
        url = json.loads(discovery.read_text())["url"]
        yield Console(url, home, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@asynccontextmanager
async def chromium_page() -> AsyncIterator[Any]:
    """A page of a fresh headless Chromium; fails (never skips) when Chromium is missing."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=45_000)  # expect() has its own timeout (5 s by default)

    if not CHROMIUM_FOUND:
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            # generous: a wait ends as soon as the DOM matches; CI machines are shared and slow
            page.set_default_timeout(45_000)
            yield page
        finally:
            await browser.close()
