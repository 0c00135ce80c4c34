"""Browser walk of the wallet, desktop and mobile: a payer adds a card on the Stripe
double's hosted page (card data never touches the portal), comes back to see it saved
as the default, turns on autopay for a billing account after accepting the mandate
(first forgetting to tick the box), and looks at the payment history. Every page visited,
the double's card page included, is scanned with axe-core.

The walker is a fresh customer group of its own in the demo database (unique names), so
the demo tenants other tests look at are unchanged."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Page, expect

from core.demo_data import DEMO_PASSWORD
from core.identity.roles import CustomerRole
from core.identity.services import (
    create_billing_account,
    create_organization,
    create_user,
    grant_role,
)
from core.identity.tables import IssuingEntity
from core.wallet.tables import AutopayEnrollment
from tests.e2e.support import assert_accessible
from tests.integration.factories import SYSTEM

pytestmark = pytest.mark.e2e

PASSWORD = "wallet-walk-password-1"


@dataclass
class Walker:
    email: str
    account_id: int
    account_name: str


@pytest.fixture
async def walker(demo_db: Any) -> Walker:
    tag = uuid.uuid4().hex[:8]
    entity = await IssuingEntity.select(IssuingEntity.id).where(IssuingEntity.code == "US").first()
    assert entity is not None
    org = await create_organization(name=f"Wallet Walk {tag}")
    name = f"Walk account {tag}"
    account = await create_billing_account(
        code=f"WALK-{tag}",
        name=name,
        organization_id=org,
        issuing_entity_id=entity["id"],
        currency_code="USD",
    )
    email = f"walker-{tag}@wallet.example"
    user = await create_user(
        email=email, name="Wally Walker", organization_id=org, password=PASSWORD
    )
    await grant_role(user, org, CustomerRole.PAYER, SYSTEM)
    return Walker(email, account, name)


async def sign_in(page: Page, email: str) -> None:
    await page.goto("/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_be_visible()


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_add_a_card_and_turn_on_autopay(
    open_session, live_server, walker: Walker, viewport: str
) -> None:
    session = await open_session(viewport)
    page, guard = session.page, session.guard
    await sign_in(page, walker.email)

    await page.goto("/wallet/methods")
    await expect(page.get_by_test_id("no-methods")).to_be_visible()
    await assert_accessible(page, "methods (empty)", guard)

    await page.get_by_test_id("add-method").click()
    await page.wait_for_url(re.compile(r"/_hosted/checkout/cs_test_"))
    assert page.url.startswith(live_server.stripe_url)  # the card is typed at "Stripe"
    guard.expect_status(404, "/favicon.ico")  # the double's page has no icon
    await expect(page.get_by_role("heading", name="Save a card")).to_be_visible()
    await assert_accessible(page, "hosted card page", guard)
    await page.locator("#card-number").fill("4242 4242 4242 4242")
    await page.locator("#card-expiry").fill("12 / 34")
    await page.locator("#card-cvc").fill("123")
    await page.locator("#name").fill("Wally Walker")
    await page.get_by_role("button", name="Save card").click()

    await page.wait_for_url(re.compile(r"/wallet/methods\?notice=added"))
    await expect(page.get_by_test_id("notice")).to_have_text("Payment method saved.")
    row = page.get_by_test_id("method-row")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("Visa ending 4242")
    await expect(row).to_contain_text("12/2034")
    await expect(row.get_by_test_id("default-badge")).to_be_visible()
    await assert_accessible(page, "methods (saved)", guard)

    await page.goto("/wallet/autopay")
    card = page.locator(f"#account-{walker.account_id}")
    await expect(card.get_by_test_id("autopay-status")).to_contain_text("Autopay off")
    await expect(card.get_by_test_id("mandate-text")).to_contain_text(walker.account_name)
    await assert_accessible(page, "autopay (off)", guard)

    guard.expect_status(422, "/wallet/autopay")
    await card.get_by_test_id("enroll").click()  # without accepting the mandate
    card = page.locator(f"#account-{walker.account_id}")
    await expect(card.locator(".field-error")).to_have_text(
        "Tick the box to accept the autopay mandate."
    )
    await assert_accessible(page, "autopay (mandate not accepted)", guard)

    await card.get_by_label("I accept this autopay mandate").check()
    await card.get_by_test_id("enroll").click()
    await page.wait_for_url(re.compile(r"/wallet/autopay\?notice=enrolled"))
    card = page.locator(f"#account-{walker.account_id}")
    await expect(card.get_by_test_id("autopay-status")).to_contain_text(
        "Autopay on with Visa ending 4242"
    )
    await assert_accessible(page, "autopay (on)", guard)
    enrollment = (
        await AutopayEnrollment.select()
        .where(
            (AutopayEnrollment.billing_account == walker.account_id)
            & AutopayEnrollment.active.eq(True)
        )
        .first()
    )
    assert enrollment is not None
    assert enrollment["mandate_text"] == await card.get_by_test_id("mandate-text").inner_text()
    assert enrollment["accepted_ip"] == "127.0.0.1"

    await page.goto("/wallet/payments")
    await expect(page.get_by_test_id("payments-count")).to_contain_text(
        "No payments match these filters."
    )
    await assert_accessible(page, "payment history (empty)", guard)


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_history_filters_with_htmx_and_opens_a_receipt(open_session, viewport: str) -> None:
    """Bob (demo payer) filters his payment history; htmx swaps the results and pushes
    the filter into the URL; a receipt opens from the list."""
    session = await open_session(viewport)
    page, guard = session.page, session.guard
    await page.goto("/login")
    await page.locator("#email").fill("bob@globex.example")
    await page.locator("#password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1)).to_be_visible()

    await page.goto("/wallet/payments")
    count = page.get_by_test_id("payments-count")
    await expect(count).to_contain_text(re.compile(r"of \d+ payments"))
    await assert_accessible(page, "payment history", guard)
    await page.get_by_label("Received from").fill("2999-01-01")
    await page.get_by_label("Method").select_option("card")  # change → htmx request
    await expect(count).to_contain_text("No payments match these filters.")
    await expect(page).to_have_url(re.compile(r"/wallet/payments\?.*method=card"))
    await expect(page.get_by_role("heading", name="Payment history")).to_be_visible()
    await assert_accessible(page, "payment history (filtered)", guard)

    await page.goto("/wallet/payments")
    first = page.get_by_test_id("receipt-link").first
    number = await first.inner_text()
    await first.click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Receipt {number}")
    await expect(page.get_by_test_id("receipt-invoices")).to_be_visible()
    await assert_accessible(page, "receipt", guard)
