"""Pure wallet rules: the autopay retry schedule, which invoices a run charges, who may
manage saved methods, the mandate text, and the receipt / failure email bodies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.identity.roles import CustomerRole
from core.wallet.history import Receipt
from core.wallet.receipts import receipt_email
from core.wallet.rules import (
    MAX_TRIES,
    MIN_CHARGE_MINOR,
    RETRY_DELAYS_DAYS,
    DueInvoice,
    PastTry,
    mandate_text,
    may_manage_methods,
    method_label,
    next_try_at,
    plan_charges,
)

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
TODAY = NOW.date()


def test_retry_schedule_is_plus_1_3_7_days_then_stops() -> None:
    failed = NOW
    times = [next_try_at(n, failed) for n in range(1, MAX_TRIES + 1)]
    assert times == [
        NOW + timedelta(days=1),
        NOW + timedelta(days=3),
        NOW + timedelta(days=7),
        None,
    ]
    with pytest.raises(ValueError, match="starts at 1"):
        next_try_at(0, NOW)


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=10**9))
def test_retry_is_always_later_and_bounded(try_number: int, seconds: int) -> None:
    failed = NOW + timedelta(seconds=seconds)
    nxt = next_try_at(try_number, failed)
    if try_number >= MAX_TRIES:
        assert nxt is None
    else:
        assert nxt is not None
        assert timedelta(days=1) <= nxt - failed <= timedelta(days=max(RETRY_DELAYS_DAYS))


invoices = st.lists(
    st.builds(
        DueInvoice,
        invoice_id=st.integers(min_value=1, max_value=10_000),
        billing_account_id=st.integers(min_value=1, max_value=4),
        currency=st.sampled_from(["USD", "EUR"]),
        due_date=st.dates(min_value=date(2026, 10, 1), max_value=date(2027, 1, 31)),
        balance_minor=st.integers(min_value=-100, max_value=10**9),
    ),
    max_size=40,
    unique_by=lambda i: i.invoice_id,
)


@given(invoices, st.frozensets(st.integers(min_value=1, max_value=10_000), max_size=20))
def test_plan_charges_only_due_open_free_invoices_once_per_account_and_currency(
    due: list[DueInvoice], live: frozenset[int]
) -> None:
    plans = plan_charges(due, today=TODAY, now=NOW, live_invoice_ids=live, past_tries={})
    by_id = {i.invoice_id: i for i in due}
    planned = [i for p in plans for i in p.invoice_ids]
    assert len(planned) == len(set(planned))  # no invoice twice
    assert len({(p.billing_account_id, p.currency) for p in plans}) == len(plans)
    for p in plans:
        members = [by_id[i] for i in p.invoice_ids]
        assert all(m.billing_account_id == p.billing_account_id for m in members)
        assert all(m.currency == p.currency for m in members)
        assert p.amount_minor == sum(m.balance_minor for m in members) >= MIN_CHARGE_MINOR
        assert p.try_number == 1
    eligible = [
        i for i in due if i.due_date <= TODAY and i.balance_minor > 0 and i.invoice_id not in live
    ]
    totals: dict[tuple[int, str], int] = {}
    for i in eligible:
        key = (i.billing_account_id, i.currency)
        totals[key] = totals.get(key, 0) + i.balance_minor
    expected = {
        i.invoice_id
        for i in eligible
        if totals[(i.billing_account_id, i.currency)] >= MIN_CHARGE_MINOR
    }
    assert set(planned) == expected


def test_past_tries_decide_waiting_retrying_and_giving_up() -> None:
    due = [DueInvoice(n, 1, "USD", TODAY - timedelta(days=3), 1000) for n in range(1, 7)]
    past = {
        1: PastTry(1, "failed", NOW + timedelta(hours=1)),  # retry not yet due
        2: PastTry(2, "failed", NOW - timedelta(minutes=1)),  # retry due: try 3
        3: PastTry(4, "failed", None),  # gave up
        4: PastTry(1, "pending", None),  # being decided
        5: PastTry(1, "requires_action", None),  # waiting for the customer
        6: PastTry(1, "canceled", None),  # starts again
    }
    [plan] = plan_charges(due, today=TODAY, now=NOW, live_invoice_ids=frozenset(), past_tries=past)
    assert plan.invoice_ids == (2, 6)
    assert plan.try_number == 3
    assert plan.amount_minor == 2000


def test_totals_stripe_would_refuse_are_left_alone() -> None:
    tiny = [DueInvoice(1, 1, "USD", TODAY, 20), DueInvoice(2, 1, "USD", TODAY, 29)]
    none = plan_charges(tiny, today=TODAY, now=NOW, live_invoice_ids=frozenset(), past_tries={})
    assert none == []
    enough = [*tiny, DueInvoice(3, 1, "USD", TODAY, 1)]
    [plan] = plan_charges(enough, today=TODAY, now=NOW, live_invoice_ids=frozenset(), past_tries={})
    assert plan.amount_minor == MIN_CHARGE_MINOR


def test_only_payers_and_above_manage_methods() -> None:
    assert not may_manage_methods([])
    assert not may_manage_methods([CustomerRole.VIEWER, None])
    for role in (CustomerRole.PAYER, CustomerRole.APPROVER, CustomerRole.ADMIN):
        assert may_manage_methods([CustomerRole.VIEWER, role])


def test_mandate_text_names_everything_the_customer_agrees_to() -> None:
    text = mandate_text(
        seller="Acme Inc.", method="Visa ending 4242", account="Main (M-1)", currency="USD"
    )
    for part in ("Acme Inc.", "Visa ending 4242", "Main (M-1)", "USD", "3 times", "11 days"):
        assert part in text
    assert method_label("visa", "4242") == "Visa ending 4242"
    assert method_label("american_express", "0005") == "American Express ending 0005"
    assert method_label("", "") == "Card"


def test_receipt_email_lists_invoices_and_credit() -> None:
    receipt = Receipt(
        payment_id=42,
        number="R-0000042",
        received_at=NOW,
        currency="EUR",
        amount_minor=12345,
        unapplied_minor=345,
        method="card",
        method_label="Visa ending 4242",
        status="succeeded",
        reference="pi_123",
        account_name="Main",
        account_code="M-1",
        organization_name="Org",
        autopay=True,
        invoices=[{"id": 1, "number": "INV-1", "amount_minor": 12000}],
    )
    subject, body = receipt_email(receipt, "https://portal.example")
    assert subject == "Payment receipt R-0000042: €123.45"
    assert "INV-1: €120.00" in body
    assert "Kept as credit on your account: €3.45" in body
    assert "Visa ending 4242 (autopay)" in body
    assert "https://portal.example/wallet/receipts/42" in body
