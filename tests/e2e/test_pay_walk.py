"""Paying in the browser (desktop and mobile), through the live server and its Stripe
double (which pushes signed webhooks back to the portal): pay one invoice through Stripe
Checkout from its page, then bulk pay three invoices with live totals. axe-core scans
every page, ours and the double's hosted checkout page.

The test makes its own small customer group inside the demo database (unique names), so
the demo's Globex and Initech data that other tests read stay as they are.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from playwright.async_api import Page, expect

from core.audit.log import Actor
from core.identity.roles import CustomerRole
from core.identity.services import (
    create_billing_account,
    create_organization,
    create_user,
    grant_role,
)
from core.identity.tables import IssuingEntity
from core.invoicing.rules import LineInput
from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference
from core.payments.tables import Payment, PaymentAttempt
from tests.e2e.support import assert_accessible

pytestmark = pytest.mark.e2e
PASSWORD = "pay walk password 2026"
SEED = Actor.system("tests.pay-walk")


@dataclass
class Payer:
    email: str
    invoices: list[dict[str, Any]]  # id, number, total_minor


@pytest.fixture
async def payer(demo_db: Any) -> Payer:
    tag = uuid.uuid4().hex[:8]
    entity = await IssuingEntity.select(IssuingEntity.id).where(IssuingEntity.code == "US").first()
    assert entity is not None
    root = await create_organization(name=f"Paywalk {tag} Inc.")
    account = await create_billing_account(
        code=f"PW-{tag}",
        name=f"Paywalk {tag} operations",
        organization_id=root,
        issuing_entity_id=entity["id"],
        currency_code="USD",
    )
    email = f"payer-{tag}@paywalk.example"
    user = await create_user(
        email=email, name="Pat Walker", organization_id=root, password=PASSWORD
    )
    await grant_role(user, root, CustomerRole.PAYER, SEED)
    invoices = []
    for amount in ("120.00", "80.00", "45.50", "19.99"):
        line = LineInput("Walk service", Decimal(1), Decimal(amount), Decimal(0), "STD")
        invoice_id = await create_draft(account, [line], SEED)
        number = await finalize(invoice_id, SEED)
        invoices.append(
            {"id": invoice_id, "number": number, "total_minor": int(Decimal(amount) * 100)}
        )
    return Payer(email, invoices)


async def sign_in(page: Page, email: str) -> None:
    await page.goto("/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/$"))


async def pay_on_stripe(page: Page, guard: Any, label: str) -> None:
    """On the double's hosted Checkout page: scan it, then pay with the test Visa."""
    await page.wait_for_url(re.compile(r"/_hosted/checkout/"))
    await expect(page.locator("#card-number")).to_be_visible()
    await assert_accessible(page, f"Stripe Checkout ({label})", guard)
    await page.locator("#email").fill("pat@paywalk.example")
    await page.locator("#card-number").fill("4242 4242 4242 4242")
    await page.locator("#card-expiry").fill("12 / 34")
    await page.locator("#card-cvc").fill("123")
    await page.locator("#name").fill("Pat Walker")
    await page.get_by_role("button", name=re.compile(r"^Pay")).click()


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_pay_walk(open_session, payer: Payer, viewport: str) -> None:
    s = await open_session(viewport)
    page, guard = s.page, s.guard
    first, *rest = payer.invoices
    guard.expect_status(404, "/favicon.ico")  # the double's hosted page has no icon

    await sign_in(page, payer.email)

    # -- one invoice, from its page, through Checkout
    await page.goto(f"/invoices/{first['id']}")
    pay_button = page.get_by_test_id("pay-invoice")
    await expect(pay_button).to_be_visible()
    await assert_accessible(page, "invoice detail with Pay", guard)
    await pay_button.click()
    await page.wait_for_url(re.compile(r"/pay\?invoice="))
    await expect(page.get_by_test_id("pay-check")).to_be_checked()
    await expect(page.get_by_test_id("pay-total")).to_have_text("$120.00")
    await assert_accessible(page, "pay one invoice", guard)
    await page.get_by_test_id("pay-submit").click()
    await pay_on_stripe(page, guard, "one invoice")
    await page.wait_for_url(re.compile(r"/pay/attempts/\d+\?checkout=success"))
    await expect(page.get_by_test_id("attempt-status")).to_have_text("Paid")
    await expect(page.get_by_test_id("attempt-total")).to_have_text("$120.00")
    await assert_accessible(page, "payment paid", guard)

    # -- three invoices at once, with live totals, one edited to a part payment
    await page.goto("/pay")
    rows = page.get_by_test_id("pay-row")
    await expect(rows).to_have_count(3)
    for inv in rest:
        await page.get_by_label(inv["number"], exact=True).check()
    await expect(page.get_by_test_id("pay-total")).to_have_text("$145.49")
    await page.get_by_label(re.compile(f"Amount to pay on {rest[0]['number']}")).fill("50.00")
    await expect(page.get_by_test_id("pay-total")).to_have_text("$115.49")
    await page.get_by_label(re.compile(f"Amount to pay on {rest[0]['number']}")).fill("80.00")
    await expect(page.get_by_test_id("pay-total")).to_have_text("$145.49")
    await assert_accessible(page, "bulk pay", guard)
    await page.get_by_test_id("pay-submit").click()
    await pay_on_stripe(page, guard, "three invoices")
    await page.wait_for_url(re.compile(r"/pay/attempts/\d+\?checkout=success"))
    await expect(page.get_by_test_id("attempt-status")).to_have_text("Paid")
    await expect(page.get_by_test_id("attempt-total")).to_have_text("$145.49")
    await assert_accessible(page, "bulk payment paid", guard)
    await page.goto("/pay")
    await expect(page.get_by_test_id("nothing-to-pay")).to_be_visible()
    await assert_accessible(page, "nothing left to pay", guard)

    # -- the books: every invoice paid once, from the Stripe balance
    ids = [i["id"] for i in payer.invoices]
    rows_db = await Invoice.select(Invoice.status, Invoice.balance_minor).where(
        Invoice.id.is_in(ids)
    )
    assert {(r["status"], r["balance_minor"]) for r in rows_db} == {("paid", 0)}
    attempts = await PaymentAttempt.select(PaymentAttempt.id).where(
        PaymentAttempt.stripe_checkout_session != ""
    )
    payments = await Payment.select(Payment.amount_minor).where(
        Payment.attempt.is_in([a["id"] for a in attempts] or [-1])
        & Payment.billing_account.is_in(
            [
                r["billing_account"]
                for r in await Invoice.select(Invoice.billing_account).where(Invoice.id == ids[0])
            ]
        )
    )
    assert sorted(p["amount_minor"] for p in payments) == [12000, 14549]
    assert await trial_balance_difference() == 0
    for code in ("USD", "EUR"):
        open_rows = await Invoice.select(Invoice.balance_minor).where(
            (Invoice.status == "open") & (Invoice.currency == code)
        )
        assert (await account_balances(code))[acct.AR] == sum(r["balance_minor"] for r in open_rows)


@pytest.mark.parametrize("viewport", ["desktop", "mobile"])
async def test_saved_card_payment_with_3d_secure(
    open_session, payer: Payer, live_server: Any, viewport: str, monkeypatch
) -> None:
    """A saved card whose bank asks for 3-D Secure: paying with it in the portal sends the
    payer to the bank's page (the double's) and back to a paid invoice."""
    from core.identity.tables import User
    from core.payments import gateway
    from tests.integration.test_payments_world import (
        configure_gateway,
        save_card,
        stripe_customer,
    )

    monkeypatch.setattr(gateway, "_config", gateway._config)  # put back after the test
    configure_gateway(live_server.stripe_url, live_server.url)
    user = await User.select(User.organization).where(User.email == payer.email).first()
    assert user is not None
    customer = await stripe_customer(user["organization"], "Paywalk 3DS")
    await save_card(user["organization"], customer, "tok_threeDSecure2Required", "3220")
    invoice = payer.invoices[-1]
    s = await open_session(viewport)
    page, guard = s.page, s.guard
    guard.expect_status(404, "/favicon.ico")  # the double's hosted page has no icon
    await sign_in(page, payer.email)

    await page.goto(f"/pay?invoice={invoice['id']}")
    await page.get_by_label(re.compile("Visa ending 3220")).check()
    await assert_accessible(page, "pay with a saved card", guard)
    await page.get_by_test_id("pay-submit").click()
    await page.wait_for_url(re.compile(r"/_hosted/authenticate/"))
    await expect(page.get_by_role("heading", name="3-D Secure authentication")).to_be_visible()
    await assert_accessible(page, "bank authentication (Stripe double)", guard)
    await page.get_by_role("button", name="Complete authentication").click()
    await page.wait_for_url(re.compile(r"/pay/attempts/\d+\?.*redirect_status=succeeded"))
    await expect(page.get_by_test_id("attempt-status")).to_have_text("Paid")
    await assert_accessible(page, "payment paid after 3-D Secure", guard)
    paid = await Invoice.select(Invoice.status).where(Invoice.id == invoice["id"]).first()
    assert paid is not None
    assert paid["status"] == "paid"
    guard.check("3-D Secure walk")
