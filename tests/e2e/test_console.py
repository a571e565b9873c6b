"""The web console end to end: `agentledger ui` in its own process, real headless Chromium.

Runs are driven by this test process on the same SQLite ledger; the console sees them only
through the log. Waits are on the DOM (Playwright's expect), never on sleeps.
"""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
from playwright.async_api import expect

from agentledger.agents.workflow import load_workflow
from agentledger.cli import main
from agentledger.llm import ModelRequest, ModelResponse, ScriptedModel
from agentledger.streams.embedded import EmbeddedRunner
from agentledger.streams.sqlite import SqliteEventLog
from agentledger.testing import make_runtime
from tests.support.console import chromium_page, start_console

FIXTURES = Path(__file__).parent.parent / "fixtures"
CONSOLE_WORKFLOW = FIXTURES / "console" / "workflow.yaml"
APPROVALS_WORKFLOW = FIXTURES / "approvals" / "workflow.yaml"
sys.path.insert(0, str(FIXTURES / "console"))
from console_model import respond  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTLEDGER_HOME", str(tmp_path))
    return tmp_path


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def test_run_page_follows_a_live_run_then_replays_it(home: Path) -> None:
    gate = asyncio.Event()

    async def gated(request: ModelRequest) -> ModelResponse:
        if request.agent == "writer":
            await gate.wait()  # hold the run mid-way until the browser has seen it
        return respond(request)

    with start_console(home) as console:
        workflow = load_workflow(CONSOLE_WORKFLOW)
        log = SqliteEventLog(console.ledger)
        runner = EmbeddedRunner(
            log, make_runtime(workflow, ScriptedModel(gated), sandbox=home / "sandbox")
        )
        task_id = await runner.submit("count the orders")
        run = asyncio.create_task(runner.run(task_id))
        try:
            async with chromium_page() as page:
                await page.goto(console.url + "/")
                row = page.locator(f'.run-row[data-task="{task_id}"]')
                await expect(row).to_contain_text("console-demo")
                await page.locator("#search").fill("no such run")
                await expect(row).to_have_count(0)
                await page.locator("#search").fill("count the")
                await page.locator("#status-filter").select_option("running")
                await expect(row).to_have_count(1)
                await row.click()

                # mid-run: gather done (green), write running, the timeline so far
                await expect(page.locator('[data-node="gather"]')).to_have_attribute(
                    "data-status", "completed"
                )
                await expect(page.locator('[data-node="write"]')).to_have_attribute(
                    "data-status", "running"
                )
                await expect(page.locator('[data-edge="gather->write"]')).to_have_count(1)
                before = await page.locator("#timeline .row").count()
                assert before >= 10

                gate.set()
                state = await run
                assert state.status == "completed"

                # the page follows live: the DAG turns green and the timeline grows
                await expect(page.locator('[data-node="write"]')).to_have_attribute(
                    "data-status", "completed"
                )
                await expect(page.locator("#run-head .status")).to_have_text("completed")
                await expect(page.locator("#timeline .row")).to_have_count(state.last_seq)
                assert state.last_seq > before
                await expect(page.locator("#tool-calls .tool-call")).to_contain_text("count_rows")
                await expect(page.locator("#llm-calls .llm-call")).to_have_count(4)
                # personal data was masked when written; the page shows the placeholder only
                body = await page.content()
                assert "ops@example.com" not in body
                assert "[email:" in body

                # the replay slider: the state as it was at seq 3 (only the planner at work)
                await page.locator("#replay").fill("3")
                await expect(page.locator("#replay-label")).to_have_text(
                    f"state as of seq 3 of {state.last_seq}"
                )
                await expect(page.locator('[data-node="write"]')).to_have_count(0)
                await expect(page.locator('[data-node="_plan"]')).to_have_attribute(
                    "data-status", "running"
                )
                await expect(page.locator("#timeline .row.future")).to_have_count(
                    state.last_seq - 3
                )
                await page.locator("#replay-live").click()
                await expect(page.locator('[data-node="write"]')).to_have_attribute(
                    "data-status", "completed"
                )
                await expect(page.locator("#run-lineage")).to_have_count(0)  # not a fork

                # a fork's page names its parent and fork point, linked (issue #15)
                code, out, err = await asyncio.to_thread(cli, "fork", task_id, "--at", "3")
                assert code == 0, err
                fork_id = out.split()[1].rstrip(":")
                fork_seq = int(out.split(" at seq ")[1].split()[0])
                await page.goto(f"{console.url}/#/runs/{fork_id}")
                await expect(page.locator("#run-head .status")).to_have_text("completed")
                lineage = page.locator("#run-lineage")
                await expect(lineage).to_have_text(
                    f"forked from {task_id} at seq {fork_seq}"
                )
                await lineage.locator("a").click()
                await expect(page.locator("#run-head code")).to_have_text(task_id)
        finally:
            gate.set()
            await asyncio.wait_for(run, 30)
            await log.close()


async def test_approve_in_the_inbox_finishes_the_task_and_charts_render(home: Path) -> None:
    with start_console(home) as console:
        code, out, err = await asyncio.to_thread(
            cli, "run", str(APPROVALS_WORKFLOW), "--goal", "nightly maintenance"
        )
        assert code == 3, err
        task_id = out.splitlines()[0].split()[1]
        approval_id = next(w for w in out.split() if w.startswith("ap-"))
        link = f"{console.url}/#/runs/{task_id}"
        assert f"watch it live: {link}" in out  # `run` points at the running console

        async with chromium_page() as page:
            await page.goto(link)
            await expect(page.locator("#run-head .status")).to_have_text("running")
            await page.locator("header nav a[data-nav=approvals]").click()
            item = page.locator(f'#approvals .approval[data-approval="{approval_id}"]')
            await expect(item).to_contain_text("wipe_table")
            await expect(item).to_contain_text("staging")
            await item.locator("button.approve").click()
            await expect(item.locator(".decision-message")).to_contain_text(
                f"approval {approval_id} granted"
            )
            # the console drives the task on, as `agentledger approve` does
            await page.goto(link)
            await expect(page.locator("#run-head .status")).to_have_text("completed")
            await expect(page.locator("#tool-calls .tool-call")).to_contain_text("granted by")
            await page.goto(console.url + "/#/approvals")
            await expect(page.locator("#no-approvals")).to_be_visible()

            # a second run: deny with a reason, recorded as `agentledger deny` records it
            code, out, err = await asyncio.to_thread(
                cli, "run", str(APPROVALS_WORKFLOW), "--goal", "weekly maintenance"
            )
            assert code == 3, err
            denied_task = out.splitlines()[0].split()[1]
            denied_id = next(w for w in out.split() if w.startswith("ap-"))
            item = page.locator(f'#approvals .approval[data-approval="{denied_id}"]')
            await item.locator(".deny-reason").fill("not during business hours")
            await item.locator("button.deny").click()
            await expect(item.locator(".decision-message")).to_contain_text(
                f"approval {denied_id} denied"
            )
            await page.goto(f"{console.url}/#/runs/{denied_task}")
            await expect(page.locator("#tool-calls .tool-call")).to_contain_text(
                "not during business hours"
            )
            await expect(page.locator('[data-node="wipe"]')).to_have_attribute(
                "data-status", "failed"
            )

            await page.goto(console.url + "/#/analytics")
            bars = page.locator('[data-chart="Tokens by agent"] rect.bar')
            await expect(bars).to_have_count(3)  # planner, janitor, scribe
            await expect(page.locator('[data-chart="Cost by model"] rect.bar')).to_have_count(1)

    wipes = (home / "sandbox" / "wipes.log").read_text().splitlines()
    assert len(wipes) == 1  # the approved call ran once, the denied one never
    code, out, _ = await asyncio.to_thread(cli, "status", task_id, "--json")
    assert code == 0 and '"status": "completed"' in out
