"""Shared by the collections tests (chargebacks, dunning, Stripe reconciliation): invoices
and Stripe payments built through the real services and a real payment intent at the
Stripe double, and the books assertions every money test ends with."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace

import pytest
import stripe

from core.identity.services import create_billing_account
from core.identity.tables import BillingAccount
from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference
from core.payments import gateway
from core.payments.allocation import AllocationRequest
from core.payments.services import record_payment
from stripe_double import Config, RunningDouble, start_in_thread
from tests.conftest import STRIPE_TEST_KEY, STRIPE_TEST_WEBHOOK_SECRET
from tests.integration.factories import SYSTEM, lines
from tests.integration.test_books import open_balance_sum
from tests.stripe_double.support import control, http, make_client


@pytest.fixture(scope="module")
def own_double() -> Iterator[RunningDouble]:
    """A Stripe double of the test module's own (manual webhooks): its balance
    transactions and events are only the module's."""
    running = start_in_thread(config=Config(webhook_mode="manual"))
    yield running
    running.stop()


@pytest.fixture
def client(own_double: RunningDouble) -> stripe.StripeClient:
    """An SDK client at the module's double, which is emptied first; the application's
    gateway (``core.payments.gateway``) points at it too."""
    control(own_double.url, "/_test/reset")
    gateway.configure(
        SimpleNamespace(
            stripe_api_key=STRIPE_TEST_KEY,
            stripe_api_base=own_double.url,
            stripe_webhook_secret=STRIPE_TEST_WEBHOOK_SECRET,
            base_url="http://127.0.0.1:1",
        )
    )
    return make_client(own_double.url)


async def invoice(account: int, amount: str, issue: date | None = None) -> int:
    """An open invoice without tax of ``amount`` (major units)."""
    draft = await create_draft(account, lines(amount, rate="0"), SYSTEM)
    await finalize(draft, SYSTEM, issue_date=issue)
    return draft


def charge(client: stripe.StripeClient, amount_minor: int, currency: str = "usd") -> str:
    """A succeeded payment intent at the double; returns its id."""
    intent = client.v1.payment_intents.create(
        params={
            "amount": amount_minor,
            "currency": currency,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert intent.status == "succeeded"
    return intent.id


@dataclass
class Paid:
    payment_id: int
    payment_intent: str


async def pay_through_stripe(
    client: stripe.StripeClient,
    account: int,
    allocations: dict[int, int],
    extra_minor: int = 0,
    currency: str = "USD",
) -> Paid:
    """Charge at the double, then record the payment as the payments area does for Stripe
    money (Stripe balance debited, the intent remembered)."""
    total = sum(allocations.values()) + extra_minor
    intent = charge(client, total, currency.lower())
    payment_id = await record_payment(
        billing_account_id=account,
        amount_minor=total,
        currency_code=currency,
        method="card",
        reference=intent,
        allocations=[AllocationRequest(i, a) for i, a in allocations.items()],
        actor=SYSTEM,
        cash_account=acct.STRIPE_BALANCE,
        stripe_payment_intent=intent,
    )
    return Paid(payment_id, intent)


async def second_account(first: int, code: str, email: str = "") -> int:
    """Another USD billing account of the same organization and issuing entity."""
    row = await BillingAccount.select().where(BillingAccount.id == first).first()
    assert row is not None
    return await create_billing_account(
        code=code,
        name=f"Account {code}",
        organization_id=row["organization"],
        issuing_entity_id=row["issuing_entity"],
        currency_code="USD",
        payment_terms_days=14,
        bill_to_email=email,
    )


async def invoice_row(invoice_id: int) -> dict:
    row = await Invoice.select().where(Invoice.id == invoice_id).first()
    assert row is not None
    return row


async def set_bill_to(account: int, email: str) -> None:
    await BillingAccount.update({BillingAccount.bill_to_email: email}).where(
        BillingAccount.id == account
    )


def event_body(client: stripe.StripeClient, url: str, event_type: str, object_id: str) -> bytes:
    """The raw JSON of the double's event of that type about that object."""
    [event] = [
        e
        for e in client.v1.events.list(params={"type": event_type, "limit": 100}).data
        if e.data.object.id == object_id
    ]
    return http.get(
        f"{url}/v1/events/{event.id}", headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"}
    ).content


def signed(body: bytes, secret: str = STRIPE_TEST_WEBHOOK_SECRET) -> str:
    """A ``Stripe-Signature`` header for ``body``, made as Stripe makes it."""
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


async def assert_books_balance(*currencies: str) -> None:
    """The ledger balances and AR equals the sum of open invoice balances."""
    assert await trial_balance_difference() == 0
    for code in currencies:
        assert (await account_balances(code)).get(acct.AR, 0) == await open_balance_sum(code)
