"""Browser walk of the cash pages: a billing-ops user (password + TOTP) applies a
payment's unapplied cash (first with a mistake), accepts a short payment as settlement,
and requests a write-off; a finance admin approves it from the queue and edits a
write-off rule; the customer sees the credit line on the invoice (loaded by htmx). The
payment page is also checked on a phone. Every page visited is scanned with axe-core
(0 serious/critical) and must run under the CSP without console errors.

Objects of this test's own on the demo database served by the shared ``live_server``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from core.identity.roles import StaffRole
from core.invoicing.tables import Invoice
from tests.e2e.support import assert_accessible
from tests.integration.assisted_support import PASSWORD, Staff, _staff
from tests.integration.cash_support import PASSWORD as CUSTOMER_PASSWORD
from tests.integration.cash_support import assert_books, build

pytestmark = pytest.mark.e2e


async def sign_in_staff(page: Page, staff: Staff) -> None:
    assert staff.app is not None
    await page.goto("/login")
    await page.locator("#email").fill(staff.email)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/login/mfa"))
    await page.get_by_label("Authentication code or recovery code").fill(staff.app.code())
    await page.get_by_role("button", name="Verify").click()
    await page.wait_for_url(re.compile(r"/staff$"))


async def test_cash_walk(demo_db, open_session, tmp_path: Path) -> None:
    world = await build(tmp_path)
    first, second = world.invoices
    ops = await _staff("Olga Ops", StaffRole.BILLING_OPS)
    admin = await _staff("Frank Finance", StaffRole.FINANCE_ADMIN)

    s = await open_session("desktop")
    page, guard = s.page, s.guard
    await sign_in_staff(page, ops)
    await page.get_by_test_id("cash-link").click()
    await page.wait_for_url(re.compile(r"/staff/cash$"))
    await assert_accessible(page, "cash: approvals", guard)

    await page.get_by_role("link", name="Unapplied cash").click()
    await page.get_by_label("Account code, name or payment reference").fill(world.code)
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_test_id("unapplied-total")).to_have_text("$150.00")
    await assert_accessible(page, "cash: unapplied cash", guard)

    await page.get_by_role("link", name=f"Payment {world.payment}").click()
    await page.wait_for_url(re.compile(rf"/staff/cash/payments/{world.payment}$"))
    await assert_accessible(page, "cash: payment", guard)
    guard.expect_status(422, "/apply")
    await page.get_by_label(f"Amount to apply to {world.numbers[0]}").fill("lots")
    await page.get_by_role("button", name="Apply cash").click()
    await expect(page.get_by_text("Enter an amount like")).to_be_visible()
    await assert_accessible(page, "cash: payment with an error", guard)
    await page.get_by_label(f"Amount to apply to {world.numbers[0]}").fill("109.50")
    await page.get_by_role("button", name="Apply cash").click()
    await expect(page.get_by_test_id("notice")).to_have_text("Cash applied.")
    await expect(page.get_by_test_id("payment-unapplied")).to_have_text("$40.50")

    await page.get_by_role("link", name=world.numbers[0]).first.click()
    await page.wait_for_url(re.compile(rf"/staff/cash/invoices/{first}$"))
    await assert_accessible(page, "cash: invoice", guard)
    await page.get_by_label("Accepted short payment").check()
    await page.get_by_label("Reason (required for a short payment)").fill("bank charges")
    await page.get_by_role("button", name="Accept settlement").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("Settled")
    await expect(page.get_by_test_id("credit-line")).to_contain_text("Accepted short payment")

    await page.goto(f"/staff/cash/invoices/{second}")
    await page.get_by_label("Reason", exact=True).fill("customer insolvent")
    await page.get_by_role("button", name="Request write-off").click()
    await expect(page.get_by_test_id("notice")).to_contain_text("waits for a finance admin")
    guard.check("billing ops walk")

    a = await open_session("desktop")
    await sign_in_staff(a.page, admin)
    await a.page.goto("/staff/cash")
    row = a.page.get_by_test_id("write-off-row").filter(has_text=world.numbers[1])
    await row.get_by_test_id("approve-write-off").click()
    await expect(a.page.get_by_test_id("notice")).to_have_text("Approved and posted.")
    await a.page.get_by_role("link", name="Write-off rules").click()
    await assert_accessible(a.page, "cash: write-off rules", a.guard)
    a.guard.expect_status(422, "/staff/cash/rules")
    await a.page.get_by_label("Currency (ISO code)").fill("XX")
    await a.page.get_by_role("button", name="Save rule").click()
    await expect(a.page.get_by_text("three-letter ISO 4217")).to_be_visible()
    await assert_accessible(a.page, "cash: write-off rules with an error", a.guard)
    await a.page.get_by_role("link", name="Discount terms").click()
    await assert_accessible(a.page, "cash: discount terms", a.guard)
    a.guard.check("finance admin walk")

    m = await open_session("mobile")
    await sign_in_staff(m.page, admin)
    await m.page.goto(f"/staff/cash/payments/{world.payment}")
    await assert_accessible(m.page, "cash: payment (mobile)", m.guard)

    c = await open_session("desktop")
    await c.page.goto("/login")
    await c.page.locator("#email").fill(world.customer_email)
    await c.page.locator("#password").fill(CUSTOMER_PASSWORD)
    await c.page.get_by_role("button", name="Sign in").click()
    await c.page.wait_for_url(re.compile(r"/$"))
    await c.page.goto(f"/invoices/{first}")
    credit = c.page.get_by_test_id("credit-line")
    await expect(credit).to_contain_text("Accepted short payment")  # swapped in by htmx
    await expect(credit).to_contain_text("-$0.50")
    await assert_accessible(c.page, "customer invoice with a credit line", c.guard)
    c.guard.check("customer")

    status = (await Invoice.select(Invoice.status).where(Invoice.id == second).first())["status"]
    assert status == "uncollectible"
    await assert_books("USD")
