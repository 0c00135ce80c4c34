"""Chargebacks with real disputes at the Stripe double: the payment is reversed, invoice
balances reopen and dunning pauses; won re-applies the money, lost keeps the invoice open
for collections; events duplicated, stale or out of order apply once; the signed webhook
delivered twice applies once. Every test ends with the books balanced."""

# ruff: noqa: F811 - fixtures imported from tests.integration.collections_support

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from core.audit.log import Actor
from core.audit.tables import AuditEvent
from core.collections.chargebacks import (
    apply_dispute,
    chargeback_detail,
    list_chargebacks,
    on_dispute_event,
    submit_evidence,
    sync_dispute,
)
from core.collections.dunning import dunning_states
from core.collections.stripe_events import HANDLERS
from core.collections.tables import Chargeback, DunningPause
from core.errors import Conflict, ValidationFailed
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances
from core.ledger.tables import JournalEntry
from core.payments.allocation import AllocationRequest
from core.payments.services import record_payment
from core.payments.tables import Payment
from core.payments.webhooks import receive
from tests.integration.collections_support import (
    assert_books_balance,
    charge,
    client,  # noqa: F401 - a fixture
    event_body,
    invoice,
    invoice_row,
    own_double,  # noqa: F401 - a fixture
    pay_through_stripe,
    signed,
)
from tests.integration.factories import SYSTEM, billing_account
from tests.stripe_double.support import control

STAFF = Actor(type="staff", id="7")


async def stripe_balance() -> int:
    return (await account_balances("USD")).get(acct.STRIPE_BALANCE, 0)


async def chargeback_entries() -> int:
    return await JournalEntry.count().where(JournalEntry.source_type == "chargeback")


async def test_dispute_reverses_then_won_reapplies(db, client, own_double) -> None:
    account = await billing_account("USD")
    first, second = await invoice(account, "100.00"), await invoice(account, "50.00")
    paid = await pay_through_stripe(client, account, {first: 10000, second: 5000})
    assert (await invoice_row(first))["status"] == "paid"
    assert await stripe_balance() == 15000

    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    for event_type in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
        await HANDLERS[event_type](event_type, dispute)
    await on_dispute_event("charge.dispute.created", dispute, client=client)  # duplicate

    [cb] = await Chargeback.select()
    assert (cb["status"], cb["stripe_status"], cb["amount_minor"], cb["fee_minor"]) == (
        "open",
        "needs_response",
        15000,
        1500,
    )
    assert cb["evidence_due_by"] > datetime.now(UTC) + timedelta(days=6)
    for inv, balance in ((first, 10000), (second, 5000)):
        row = await invoice_row(inv)
        assert (row["status"], row["balance_minor"], row["paid_minor"]) == ("open", balance, 0)
    payment = await Payment.select().where(Payment.id == paid.payment_id).first()
    assert payment["status"] == "disputed"
    balances = await account_balances("USD")
    assert balances[acct.STRIPE_BALANCE] == -1500  # the amount and the dispute fee withdrawn
    assert balances[acct.DISPUTE_LOSSES] == 1500
    assert balances[acct.AR] == 15000
    assert await chargeback_entries() == 1
    await assert_books_balance("USD")

    # Dunning: both invoices and the account are paused while the chargeback is open.
    rows = await Invoice.select().where(Invoice.id.is_in([first, second]))
    states = await dunning_states(rows)
    assert all(s.disputed and s.pauses for s in states.values())
    assert await DunningPause.count().where(DunningPause.invoice.is_null()) == 1

    # Staff: the checklist and the days left, evidence staged, then submitted.
    detail = await chargeback_detail(cb["id"])
    assert detail["days_left"] == 7
    assert detail["accepts_evidence"]
    assert detail["provided"] == 0
    with pytest.raises(ValidationFailed) as bad:
        await submit_evidence(cb["id"], {"receipt": "my receipt"}, submit=False, actor=STAFF)
    assert "file_" in bad.value.errors["receipt"]
    await submit_evidence(
        cb["id"],
        {"customer_communication": "file_123abc", "product_description": "Platform, March"},
        submit=False,
        actor=STAFF,
    )
    assert (await chargeback_detail(cb["id"]))["provided"] == 2
    await submit_evidence(
        cb["id"], {"uncategorized_text": "winning_evidence"}, submit=True, actor=STAFF
    )

    [cb] = await Chargeback.select()
    assert (cb["status"], cb["stripe_status"], cb["reinstated_minor"]) == ("won", "won", 15000)
    for inv in (first, second):
        row = await invoice_row(inv)
        assert (row["status"], row["balance_minor"]) == ("paid", 0)
    payment = await Payment.select().where(Payment.id == paid.payment_id).first()
    assert payment["status"] == "succeeded"
    assert await stripe_balance() == 13500  # only the fee stays lost
    assert await DunningPause.count().where(DunningPause.lifted_at.is_null()) == 0

    # Stale or repeated events change nothing more.
    entries = await JournalEntry.count()
    for event_type in ("charge.dispute.created", "charge.dispute.closed"):
        await on_dispute_event(event_type, dispute, client=client)
    assert await JournalEntry.count() == entries
    assert await chargeback_entries() == 2
    with pytest.raises(Conflict):
        await submit_evidence(cb["id"], {"product_description": "x"}, submit=True, actor=STAFF)
    actions = {
        r["action"]
        for r in await AuditEvent.select(AuditEvent.action).where(
            AuditEvent.object_type == "chargeback"
        )
    }
    assert {"chargeback.opened", "chargeback.funds_withdrawn", "chargeback.won"} <= actions
    assert {"chargeback.evidence_saved", "chargeback.evidence_submitted"} <= actions
    await assert_books_balance("USD")


async def test_partial_dispute_lost_keeps_invoice_open_for_collections(
    db, client, own_double
) -> None:
    account = await billing_account("USD")
    inv = await invoice(account, "100.00")
    paid = await pay_through_stripe(client, account, {inv: 10000}, extra_minor=5000)
    assert (await account_balances("USD"))[acct.UNAPPLIED_CASH] == -5000

    dispute = control(
        own_double.url,
        "/_test/disputes",
        {"payment_intent": paid.payment_intent, "amount": 12000, "reason": "product_not_received"},
    )
    await on_dispute_event("charge.dispute.created", dispute, client=client)
    row = await invoice_row(inv)
    assert (row["status"], row["balance_minor"]) == ("open", 7000)  # 5000 from unapplied
    balances = await account_balances("USD")
    assert balances.get(acct.UNAPPLIED_CASH, 0) == 0
    assert balances[acct.STRIPE_BALANCE] == 15000 - 12000 - 1500
    payment = await Payment.select().where(Payment.id == paid.payment_id).first()
    assert (payment["status"], payment["unapplied_minor"]) == ("disputed", 0)

    client.v1.disputes.close(dispute["id"])  # accepting it: lost
    await on_dispute_event("charge.dispute.closed", dispute, client=client)
    await on_dispute_event("charge.dispute.closed", dispute, client=client)
    [cb] = await list_chargebacks()
    assert (cb["status"], cb["reason"], cb["days_left"]) == ("lost", "product_not_received", None)
    row = await invoice_row(inv)
    assert (row["status"], row["balance_minor"]) == ("open", 7000)
    payment = await Payment.select().where(Payment.id == paid.payment_id).first()
    assert payment["status"] == "reversed"
    [state] = (await dunning_states([row])).values()
    assert not state.disputed
    assert not state.pauses  # back to collections: reminders resume
    balances = await account_balances("USD")
    assert balances[acct.STRIPE_BALANCE] == 15000 - 12000 - 1500
    assert balances[acct.DISPUTE_LOSSES] == 1500
    await assert_books_balance("USD")


async def test_out_of_order_and_dispute_before_payment(db, client, own_double) -> None:
    account = await billing_account("USD")
    inv = await invoice(account, "80.00")
    paid = await pay_through_stripe(client, account, {inv: 8000})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    control(own_double.url, f"/_test/disputes/{dispute['id']}/close", {"outcome": "won"})
    # The closed event is handled first: withdrawal and reinstatement both post.
    await on_dispute_event("charge.dispute.closed", {"id": dispute["id"]}, client=client)
    await on_dispute_event("charge.dispute.created", dispute, client=client)
    assert (await invoice_row(inv))["status"] == "paid"
    assert await chargeback_entries() == 2
    assert await stripe_balance() == 8000 - 1500

    # A dispute whose payment we have not recorded yet waits, then applies.
    other = await invoice(account, "60.00")
    intent = charge(client, 6000)
    early = control(own_double.url, "/_test/disputes", {"payment_intent": intent})
    cb_id = await sync_dispute(early["id"], client=client)
    cb = await Chargeback.select().where(Chargeback.id == cb_id).first()
    assert cb["reversed_at"] is None
    assert await chargeback_entries() == 2
    await record_payment(
        billing_account_id=account,
        amount_minor=6000,
        currency_code="USD",
        method="card",
        reference=intent,
        allocations=[AllocationRequest(other, 6000)],
        actor=SYSTEM,
        cash_account=acct.STRIPE_BALANCE,
        stripe_payment_intent=intent,
    )
    await on_dispute_event("charge.dispute.updated", early, client=client)
    assert (await invoice_row(other))["balance_minor"] == 6000
    assert await chargeback_entries() == 3
    await assert_books_balance("USD")


async def test_unknown_payload_is_ignored(db, client) -> None:
    await on_dispute_event("charge.dispute.created", {"id": "ch_not_a_dispute"}, client=client)
    assert await Chargeback.count() == 0
    with pytest.raises(stripe.InvalidRequestError):
        await sync_dispute("dp_missing", client=client)


async def test_signed_webhook_delivered_twice_applies_once(db, client, own_double) -> None:
    account = await billing_account("USD")
    inv = await invoice(account, "90.00")
    paid = await pay_through_stripe(client, account, {inv: 9000})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    body = event_body(client, own_double.url, "charge.dispute.created", dispute["id"])
    outcomes = [await receive(body, signed(body)) for _ in range(2)]
    assert outcomes == ["processed", "duplicate"]
    assert await Chargeback.count() == 1
    assert await chargeback_entries() == 1
    assert (await invoice_row(inv))["balance_minor"] == 9000
    await assert_books_balance("USD")


async def test_apply_is_idempotent_under_concurrency(db, client, own_double) -> None:
    account = await billing_account("USD")
    inv = await invoice(account, "70.00")
    paid = await pay_through_stripe(client, account, {inv: 7000})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    fresh = client.v1.disputes.retrieve(dispute["id"]).to_dict(recursive=True)
    await asyncio.gather(*(apply_dispute(fresh) for _ in range(5)))
    assert await Chargeback.count() == 1
    assert await chargeback_entries() == 1
    assert (await invoice_row(inv))["balance_minor"] == 7000
    await assert_books_balance("USD")


async def test_chargeback_takes_back_its_share_of_realized_fx_and_won_posts_it_again(
    db, client, own_double
) -> None:
    """A EUR invoice of the USD entity (frozen at 1.10) paid by card at 1.05 realized a
    50.00 USD loss. A dispute of 600.00 of the 1,000.00 takes back 60% of that loss with
    the money (the invoice is open again for 600.00); winning it posts the 30.00 again."""
    from datetime import date

    from core.fx.services import add_manual_rate
    from tests.integration.finance_support import APPROVER
    from tests.integration.test_realized_fx import (
        assert_balanced_per_currency,
        eur_invoice_of_usd_entity,
        fx_balances,
    )

    account, inv = await eur_invoice_of_usd_entity("1000.00", code="FX-CB")
    await add_manual_rate("EUR", "USD", "1.05", date(2026, 3, 20), APPROVER)
    paid = await pay_through_stripe(client, account, {inv: 100000}, currency="EUR")
    assert await fx_balances() == (5000, -5000)

    dispute = control(
        own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent, "amount": 60000}
    )
    await on_dispute_event("charge.dispute.created", dispute, client=client)
    await on_dispute_event("charge.dispute.created", dispute, client=client)  # duplicate
    row = await invoice_row(inv)
    assert (row["status"], row["balance_minor"]) == ("open", 60000)
    assert await fx_balances() == (2000, -2000)  # 30.00 of the 50.00 loss taken back
    [reversed_fx] = await JournalEntry.select().where(JournalEntry.event.like("fx-reversed-p%"))
    assert (reversed_fx["currency"], reversed_fx["source_type"]) == ("USD", "chargeback")
    await assert_balanced_per_currency()

    control(own_double.url, f"/_test/disputes/{dispute['id']}/close", {"outcome": "won"})
    await on_dispute_event("charge.dispute.closed", dispute, client=client)
    await on_dispute_event("charge.dispute.closed", dispute, client=client)  # duplicate
    row = await invoice_row(inv)
    assert (row["status"], row["balance_minor"]) == ("paid", 0)
    assert await fx_balances() == (5000, -5000)
    assert await JournalEntry.count().where(JournalEntry.event.like("fx-reinstated-p%")) == 1
    await assert_balanced_per_currency()
