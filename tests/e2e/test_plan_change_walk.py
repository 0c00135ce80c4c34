"""Browser walk of a plan change with its proration preview, on the demo data: carol
(approver of the whole Initech group) opens Subscriptions, picks a subscription, chooses a
bigger plan and quantity, sees the proration preview (htmx swap), confirms, and sees the
result: the new plan, the pending proration lines and the history. Desktop and mobile;
every page state is scanned with axe-core and must run under the CSP without console
errors. The subscription is created for the walk and removed afterwards; the demo
subscriptions are not touched."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from playwright.async_api import expect

from core.audit.log import Actor
from core.billing import subscriptions as subs
from core.billing.tables import PendingCharge, Subscription, SubscriptionChange
from core.catalog.tables import Price
from core.demo_data import DEMO_PASSWORD
from core.identity.tables import BillingAccount
from portal.templating import money
from tests.e2e.support import assert_accessible

pytestmark = pytest.mark.e2e

CAROL = "carol@initech.example"


async def _id(table: Any, code: str) -> int:
    row = await table.select(table.id).where(table.code == code).first()
    assert row is not None, code
    return int(row["id"])


@pytest.fixture
async def walk_subscription(demo_db: Any, live_server: Any) -> AsyncIterator[int]:
    account = await _id(BillingAccount, "INITECH-US-01")
    sub_id = await subs.create(
        account, await _id(Price, "starter-m-usd"), Decimal(1), Actor.system("e2e")
    )
    yield sub_id
    await PendingCharge.delete().where(PendingCharge.subscription == sub_id)
    await SubscriptionChange.delete().where(SubscriptionChange.subscription == sub_id)
    await Subscription.delete().where(Subscription.id == sub_id)


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_customer_changes_plan_with_a_proration_preview(
    open_session, walk_subscription: int, viewport: str
) -> None:
    session = await open_session(viewport)
    page, guard = session.page, session.guard
    await page.goto("/login")
    await page.locator("#email").fill(CAROL)
    await page.locator("#password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/$"))

    # -- the list of subscriptions in carol's scope
    await page.goto("/subscriptions")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Subscriptions")
    await assert_accessible(page, f"{viewport}: subscriptions", guard)
    await page.locator(f'a[href="/subscriptions/{walk_subscription}"]').click()
    await page.wait_for_url(re.compile(rf"/subscriptions/{walk_subscription}$"))
    await expect(page.get_by_test_id("current-plan")).to_have_text("Starter (monthly)")
    await assert_accessible(page, f"{viewport}: subscription detail", guard)

    # -- choose Pro x 3 and preview: the fragment swaps in without a page load
    pro = await _id(Price, "pro-m-usd")
    await page.locator("#price").select_option(str(pro))
    await page.locator("#quantity").fill("3")
    await page.get_by_test_id("preview-change").click()
    preview = page.get_by_test_id("preview")
    await expect(preview).to_be_visible()
    assert re.search(rf"/subscriptions/{walk_subscription}$", page.url)  # no navigation
    lines = page.get_by_test_id("preview-lines")
    await expect(lines).to_contain_text("Starter (monthly)")
    await expect(lines).to_contain_text("Pro (monthly) × 3")
    net_text = (await page.get_by_test_id("preview-net").inner_text()).strip()
    await assert_accessible(page, f"{viewport}: proration preview", guard)

    # -- what the preview shows is what the service computes for the same instant
    at = await page.locator('input[name="at"]').input_value()
    expected = await subs.preview(
        walk_subscription, subs.Request("change", pro, Decimal(3)), at=subs.parse_at(at)
    )
    assert net_text == money(expected.preview.net.to_minor(), "USD")

    # -- confirm: the result page shows the new plan and the pending proration lines
    await page.get_by_test_id("confirm").click()
    await page.wait_for_url(re.compile(rf"/subscriptions/{walk_subscription}\?notice="))
    await expect(page.get_by_test_id("notice")).to_contain_text("plan change is applied")
    await expect(page.get_by_test_id("current-plan")).to_have_text("Pro (monthly) × 3")
    pending = page.get_by_test_id("pending-charges")
    for line in expected.preview.lines:
        await expect(pending).to_contain_text(money(line.amount.to_minor(), "USD"))
    await expect(page.get_by_test_id("history")).to_contain_text("Change price")
    await assert_accessible(page, f"{viewport}: after the change", guard)
    charges = await subs.pending_charges(walk_subscription)
    assert sum(c["amount_minor"] for c in charges) == expected.preview.net.to_minor()
