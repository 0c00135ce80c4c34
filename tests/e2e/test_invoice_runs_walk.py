"""Browser walk of the invoice-run console and the customer usage page on the demo data:
billing ops open Invoice runs from the console, a running run's page (which polls its
progress fragment every second), a failed chunk with its reason and retry button, the
milestone form with its errors, the late usage review; carol opens Usage (desktop and
mobile). Every page is scanned with axe-core and runs under the CSP without console errors.
The run shown is created for the walk and removed afterwards."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from core.billing.run_tables import InvoiceRun, RunChunk
from core.demo_data import DEMO_PASSWORD
from core.identity.roles import StaffRole
from tests.e2e.support import assert_accessible
from tests.e2e.test_cash_walk import sign_in_staff
from tests.integration.assisted_support import _staff, use_server_keys

pytestmark = pytest.mark.e2e


@pytest.fixture
async def walk_run(demo_db: Any, live_server: Any) -> AsyncIterator[int]:
    now = datetime.now(UTC)
    [run] = await InvoiceRun.insert(
        InvoiceRun(
            status="running",
            as_of=now,
            trigger="test",
            created_by="system:e2e",
            subscriptions_total=3,
            chunks_total=3,
            created_at=now,
        )
    )
    for number, status, error in (
        (1, "done", ""),
        (2, "failed", "ConnectionError('database unreachable')"),
        (3, "running", ""),
    ):
        await RunChunk.insert(
            RunChunk(
                run=run["id"],
                number=number,
                items=json.dumps({"subscriptions": [], "accounts": []}),
                size=1,
                status=status,
                attempts=5 if error else 1,
                invoices=1 if status == "done" else 0,
                finalized=1 if status == "done" else 0,
                error=error,
                updated_at=now,
            )
        )
    yield int(run["id"])
    await RunChunk.delete().where(RunChunk.run == run["id"])
    await InvoiceRun.delete().where(InvoiceRun.id == run["id"])


async def test_staff_run_console(open_session, walk_run: int, tmp_path: Path) -> None:
    use_server_keys(tmp_path)
    ops = await _staff("Rita Runs", StaffRole.BILLING_OPS)
    s = await open_session("desktop")
    page, guard = s.page, s.guard
    await sign_in_staff(page, ops)
    await page.get_by_test_id("runs-link").click()
    await page.wait_for_url(re.compile(r"/staff/runs$"))
    await assert_accessible(page, "runs: list", guard)

    await page.locator(f'a[href="/staff/runs/{walk_run}"]').click()
    await page.wait_for_url(re.compile(rf"/staff/runs/{walk_run}$"))
    await expect(page.get_by_test_id("count-invoices")).to_have_text("1")
    await expect(page.get_by_test_id("failed-chunks")).to_contain_text("database unreachable")
    await expect(page.get_by_test_id("retry-2")).to_be_visible()
    # The fragment polls while the run is running: a chunk finishing shows up unasked.
    await RunChunk.update(
        {RunChunk.status: "done", RunChunk.invoices: 2, RunChunk.finalized: 2}
    ).where((RunChunk.run == walk_run) & (RunChunk.number == 3))
    await expect(page.get_by_test_id("count-invoices")).to_have_text("3", timeout=5000)
    await assert_accessible(page, "runs: run progress", guard)

    await page.goto("/staff/runs/milestones")
    await assert_accessible(page, "runs: milestones", guard)
    guard.expect_status(422, "/staff/runs/milestones")
    await page.get_by_role("button", name="Record milestone").click()
    await expect(page.locator("#m-description-error")).to_contain_text("Describe the milestone")
    await assert_accessible(page, "runs: milestone form with errors", guard)

    await page.goto("/staff/runs/usage-review")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Late usage held for review")
    await assert_accessible(page, "runs: late usage review", guard)


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_customer_usage_page(open_session, demo_db: Any, viewport: str) -> None:
    s = await open_session(viewport)
    page, guard = s.page, s.guard
    await page.goto("/login")
    await page.locator("#email").fill("carol@initech.example")
    await page.locator("#password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/$"))
    await page.goto("/usage")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Usage this period")
    await expect(page.locator("body")).not_to_contain_text("Globex")
    await assert_accessible(page, f"{viewport}: usage", guard)
