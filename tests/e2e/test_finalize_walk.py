"""Browser walk of the staff finance pages: billing ops filter the drafts (htmx), cannot
approve their own draft; a finance admin approves it, ops finalize it; the admin enters
an exchange rate with a mistake first, visits tax, period locks and policies. The drafts
list is also checked on a phone. Every page visited is scanned with axe-core (0
serious/critical) and must run under the CSP without console errors.

Objects of this test's own (issuing entity, customer, drafts, staff) on the demo
database served by the shared ``live_server``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from core.identity.roles import StaffRole
from core.invoicing.tables import Invoice
from tests.e2e.support import assert_accessible
from tests.e2e.test_cash_walk import sign_in_staff
from tests.integration.assisted_support import Staff, _staff, use_server_keys
from tests.integration.test_finalize_pages import World, build_world

pytestmark = pytest.mark.e2e


async def _world(tmp_path: Path) -> tuple[World, Staff, Staff]:
    use_server_keys(tmp_path)
    admin = await _staff("Walk Admin", StaffRole.FINANCE_ADMIN)
    ops = await _staff("Walk Ops", StaffRole.BILLING_OPS)
    return await build_world(ops), admin, ops


async def test_finance_walk(demo_db, open_session, tmp_path: Path) -> None:
    world, admin, ops = await _world(tmp_path)

    s = await open_session("desktop")
    page, guard = s.page, s.guard
    await sign_in_staff(page, ops)
    await page.get_by_test_id("finance-link").click()
    await page.wait_for_url(re.compile(r"/staff/finance/drafts$"))
    await assert_accessible(page, "finance: drafts", guard)
    await page.get_by_label("Billing account").fill(world.account_code)
    await expect(page.get_by_test_id("draft-count")).to_have_text("2 drafts.")
    await expect(page).to_have_url(re.compile(rf"q={world.account_code}"))
    await page.get_by_role("link", name=f"Draft {world.large}").click()
    await page.wait_for_url(re.compile(rf"/staff/finance/drafts/{world.large}$"))
    await expect(page.get_by_text("You created this draft")).to_be_visible()
    guard.expect_status(409, "/finalize")
    await page.get_by_test_id("finalize").click()
    await expect(page.get_by_test_id("error")).to_contain_text("approval needed")
    await assert_accessible(page, "finance: draft held for approval", guard)
    guard.check("billing ops walk")

    a = await open_session("desktop")
    await sign_in_staff(a.page, admin)
    await a.page.goto(f"/staff/finance/drafts/{world.large}")
    await a.page.get_by_test_id("approve").click()
    await expect(a.page.get_by_test_id("notice")).to_have_text("Draft approved.")
    await expect(a.page.get_by_test_id("approval")).to_contain_text("approved by staff:")

    await page.goto(f"/staff/finance/drafts/{world.large}")
    await page.get_by_test_id("finalize").click()
    await expect(page.get_by_test_id("status")).to_have_text("open")
    number = (await Invoice.select(Invoice.number).where(Invoice.id == world.large).first())[
        "number"
    ]
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    await assert_accessible(page, "finance: finalized invoice", guard)

    await a.page.get_by_role("link", name="Exchange rates").click()
    await assert_accessible(a.page, "finance: rates", a.guard)
    a.guard.expect_status(422, "/staff/finance/rates")
    await a.page.get_by_label("Quote currency").fill("USD")
    await a.page.get_by_label("Rate", exact=True).fill("not a rate")
    await a.page.get_by_label("Date").fill("2002-01-02")
    await a.page.get_by_role("button", name="Save rate").click()
    await expect(a.page.get_by_text("Enter a number such as 1.0842.")).to_be_visible()
    await assert_accessible(a.page, "finance: rates with an error", a.guard)
    await a.page.get_by_label("Rate", exact=True).fill("0.9051")
    await a.page.get_by_role("button", name="Save rate").click()
    await expect(a.page.get_by_test_id("notice")).to_have_text("Exchange rate saved.")

    for name, label in (
        ("Tax", "finance: tax"),
        ("Period locks", "finance: period locks"),
        ("Approval and numbering", "finance: policies"),
        ("GL export", "finance: GL export"),
    ):
        await a.page.get_by_role("link", name=name, exact=True).click()
        await assert_accessible(a.page, label, a.guard)
    a.guard.check("finance admin walk")

    m = await open_session("mobile")
    await sign_in_staff(m.page, admin)
    await m.page.goto(f"/staff/finance/drafts?q={world.account_code}")
    await expect(m.page.get_by_test_id("draft-count")).to_have_text("1 draft.")
    await assert_accessible(m.page, "finance: drafts on a phone", m.guard)
    m.guard.check("mobile walk")
