"""Stripe balance transactions against the ledger's Stripe balance: what agrees is not
flagged; a charge the ledger misses, a refund it never booked and a ledger movement with
no Stripe object are; later runs pick up only new transactions and resolve what agrees."""

# ruff: noqa: F811 - fixtures imported from tests.integration.collections_support

from __future__ import annotations

from datetime import date

from core.audit.log import Actor
from core.collections.chargebacks import on_dispute_event
from core.collections.reconciliation import (
    compare,
    differences,
    expected_ledger_minor,
    recent_runs,
    reconcile,
    resolve_difference,
    txn_key,
)
from core.collections.tables import ReconciliationDifference, StripeBalanceTxn
from core.identity.tables import BillingAccount
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, account_balances, post
from core.ledger.rules import credit, debit
from core.payments.services import record_payment
from tests.integration.collections_support import (
    assert_books_balance,
    charge,
    client,  # noqa: F401 - a fixture
    invoice,
    own_double,  # noqa: F401 - a fixture
    pay_through_stripe,
)
from tests.integration.factories import SYSTEM, billing_account
from tests.stripe_double.support import control

STAFF = Actor(type="staff", id="9")


def open_differences(rows: list[dict]) -> dict[str, tuple[str, int, int]]:
    return {r["key"]: (r["kind"], r["stripe_minor"], r["ledger_minor"]) for r in rows}


async def test_reconciliation_flags_what_the_ledger_misses(db, client, own_double) -> None:
    account = await billing_account("USD")
    first = await pay_through_stripe(client, account, {await invoice(account, "100.00"): 10000})
    second = await pay_through_stripe(client, account, {await invoice(account, "40.00"): 4000})
    unbooked = charge(client, 4200)  # money at Stripe the ledger never heard of
    client.v1.refunds.create(params={"payment_intent": second.payment_intent, "amount": 1000})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": first.payment_intent})
    await on_dispute_event("charge.dispute.created", dispute, client=client)
    issuer = (
        await BillingAccount.select(BillingAccount.issuing_entity)
        .where(BillingAccount.id == account)
        .first()
    )["issuing_entity"]
    await post(
        EntrySpec(
            issuing_entity_id=issuer,
            currency="USD",
            effective_date=date(2026, 11, 1),
            source_type="manual",
            source_id=1,
            event="booked",
            description="Stripe balance moved by hand",
            lines=[debit(acct.STRIPE_BALANCE, 500), credit(acct.CASH, 500)],
        )
    )

    summary = await reconcile(client=client)
    assert summary.transactions == 5  # 3 charges, 1 refund, 1 dispute withdrawal
    assert summary.differences == 3
    assert summary.fees_minor == {"USD": (290 + 30) + (116 + 30) + (122 + 30)}
    flagged = open_differences(await differences())
    # Amounts are net of Stripe's fees; the run booked the fees of the two recorded
    # payments (their settlement never did: they were recorded directly).
    assert flagged == {
        unbooked: ("missing_in_ledger", 4200 - 152, 0),
        second.payment_intent: ("amount_mismatch", 4000 - 146 - 1000, 4000 - 146),
        "ledger:manual:1": ("missing_in_stripe", 0, 500),
    }
    assert (await account_balances("USD"))[acct.PROCESSING_FEES] == 320 + 146
    # The paid-and-disputed payment agrees: charge 10000 less its 320 fee, dispute
    # -(10000 + 1500 fee).
    assert first.payment_intent not in flagged
    assert dispute["id"] not in flagged

    # Nothing new: the next run lists nothing again and keeps one open row per key.
    again = await reconcile(client=client)
    assert (again.transactions, again.differences, again.resolved) == (0, 3, 0)
    assert await ReconciliationDifference.count() == 3
    assert await StripeBalanceTxn.count() == 5

    # Booking the missing payment resolves its difference on the next run; the dispute
    # won at Stripe is new and agrees once its event is handled.
    await record_payment(
        billing_account_id=account,
        amount_minor=4200,
        currency_code="USD",
        method="card",
        reference=unbooked,
        allocations=[],
        actor=SYSTEM,
        cash_account=acct.STRIPE_BALANCE,
        stripe_payment_intent=unbooked,
    )
    control(own_double.url, f"/_test/disputes/{dispute['id']}/close", {"outcome": "won"})
    await on_dispute_event("charge.dispute.closed", dispute, client=client)
    third = await reconcile(client=client)
    assert (third.transactions, third.resolved) == (1, 1)
    assert open_differences(await differences()).keys() == {
        second.payment_intent,
        "ledger:manual:1",
    }

    [manual] = [d for d in await differences() if d["key"] == "ledger:manual:1"]
    await resolve_difference(manual["id"], "Correction booked by finance", STAFF)
    assert len(await differences("open")) == 1
    assert sorted(d["resolved_by"] for d in await differences("resolved")) == [
        "reconciliation",
        "staff:9",
    ]
    runs = await recent_runs()
    assert [r["transactions"] for r in runs] == [1, 0, 5]
    assert runs[0]["since_created"] > 0
    await assert_books_balance("USD")


def test_pure_rules() -> None:
    assert txn_key({"type": "charge", "source": {"id": "ch_1", "payment_intent": "pi_1"}}) == (
        "pi_1"
    )
    assert txn_key({"type": "refund", "source": {"id": "re_1", "payment_intent": "pi_1"}}) == (
        "pi_1"
    )
    assert txn_key({"type": "adjustment", "reporting_category": "dispute", "source": "dp_1"}) == (
        "dp_1"
    )
    assert txn_key({"type": "payout", "source": {"id": "po_1"}}) == ""
    assert expected_ledger_minor("dispute", -1000, -2500) == -2500
    assert expected_ledger_minor("charge", 1000, 940) == 940
    found, agreed = compare(
        {"a": ("USD", 10), "b": ("USD", 5), "c": ("USD", 0)},
        {"a": ("USD", 10), "b": ("USD", 4), "d": ("USD", 3)},
        ["a", "b", "c", "d", "e"],
    )
    assert agreed == ["a", "c", "e"]
    assert [(d.key, d.kind) for d in found] == [
        ("b", "amount_mismatch"),
        ("d", "missing_in_stripe"),
    ]
