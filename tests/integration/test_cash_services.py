"""Write-offs, unapplied cash, refunds and adjusted payments against real PostgreSQL:
postings, approvals with segregation of duties, roles, concurrency; the books balance
and AR equals the open invoice balances after each test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from core.audit.tables import AuditEvent
from core.cash import adjustments, allocations, refunds, writeoffs
from core.cash.rules import WriteOffLimits
from core.cash.tables import AllocationChange, Refund, WriteOff
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.security import NotPermitted
from core.invoicing.rules import LineInput
from core.invoicing.services import create_draft, finalize, mark_uncollectible
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.tables import JournalEntry, JournalLine
from core.payments import gateway
from core.payments.allocation import AllocationRequest
from core.payments.tables import Allocation, Payment
from tests.conftest import STRIPE_TEST_KEY, STRIPE_TEST_WEBHOOK_SECRET
from tests.integration.cash_support import assert_books, crew, open_invoice, pay, sibling_account
from tests.integration.factories import SYSTEM, billing_account
from workers.cash_jobs import send_waiting_stripe_refunds


async def invoice_row(invoice_id: int) -> dict:
    row = await Invoice.select().where(Invoice.id == invoice_id).first()
    assert row is not None
    return row


# ------------------------------------------------------------------------- write-offs


async def test_small_residual_is_written_off_at_once(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    await pay(account, 9996, [(inv, 9996)])
    result = await writeoffs.write_off_residual(inv, SYSTEM)
    assert (result.status, result.amount_minor) == ("written_off", 4)
    row = await invoice_row(inv)
    assert (row["status"], row["balance_minor"], row["paid_minor"]) == ("paid", 0, 9996)
    balances = await assert_books("EUR")
    assert balances[acct.WRITE_OFF] == 4
    entry = await JournalEntry.select().where(JournalEntry.source_type == "write_off").first()
    assert entry["source_id"] == result.write_off_id
    # nothing open any more: a second call does nothing
    assert (await writeoffs.write_off_residual(inv, SYSTEM)).status == "not_needed"
    assert await WriteOff.count() == 1


async def test_credit_lines_show_invoices_marked_uncollectible(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "30.00")
    await pay(account, 1000, [(inv, 1000)])
    await mark_uncollectible(inv, SYSTEM, reason="insolvent")
    lines = await adjustments.credit_lines(inv)
    assert [(c["label"], c["amount_minor"]) for c in lines] == [
        ("Written off as uncollectible", 2000)
    ]
    await assert_books("EUR")


async def test_percent_limit_applies_too(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "2.00")  # 1 % of 2.00 is 0.02
    await pay(account, 197, [(inv, 197)])
    result = await writeoffs.write_off_residual(inv, SYSTEM)
    assert result.status == "pending_approval"  # 0.03 is under 5.00 but over 1 %
    await assert_books("EUR")


async def test_large_residual_waits_for_another_finance_admin(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    await pay(account, 9000, [(inv, 9000)])
    first = await writeoffs.write_off_residual(inv, staff.ops)
    assert (first.status, first.amount_minor) == ("pending_approval", 1000)
    again = await writeoffs.write_off_residual(inv, staff.ops)
    assert again.write_off_id == first.write_off_id  # one pending request per invoice
    assert (await invoice_row(inv))["balance_minor"] == 1000
    assert (await assert_books("EUR")).get(acct.WRITE_OFF, 0) == 0

    with pytest.raises(NotPermitted):  # billing ops cannot approve
        await writeoffs.approve_write_off(first.write_off_id, staff.ops)
    with pytest.raises(NotPermitted):  # auditors read only
        await writeoffs.approve_write_off(first.write_off_id, staff.auditor)
    approved = await writeoffs.approve_write_off(first.write_off_id, staff.admin, "ok")
    assert (approved.status, approved.amount_minor) == ("written_off", 1000)
    with pytest.raises(Conflict):
        await writeoffs.approve_write_off(first.write_off_id, staff.admin2)
    assert (await invoice_row(inv))["status"] == "paid"
    assert [(c["label"], c["amount_minor"]) for c in await adjustments.credit_lines(inv)] == [
        ("Written off", 1000)
    ]
    assert (await assert_books("EUR"))[acct.WRITE_OFF] == 1000
    actions = {r["action"] for r in await AuditEvent.select(AuditEvent.action)}
    assert {"write_off.requested", "write_off.approved", "invoice.written_off"} <= actions


async def test_requester_cannot_approve_own_write_off(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    result = await writeoffs.request_write_off(inv, "customer insolvent", staff.admin)
    assert result.status == "pending_approval"
    with pytest.raises(Conflict, match="another finance admin"):
        await writeoffs.approve_write_off(result.write_off_id, staff.admin)
    with pytest.raises(ValidationFailed):
        await writeoffs.reject_write_off(result.write_off_id, staff.admin2, "  ")
    await writeoffs.reject_write_off(result.write_off_id, staff.admin2, "collect it")
    row = await WriteOff.select().where(WriteOff.id == result.write_off_id).first()
    assert (row["status"], row["decided_by"]) == ("rejected", f"staff:{staff.admin2.id}")
    assert (await invoice_row(inv))["balance_minor"] == 10000
    assert (await assert_books("EUR")).get(acct.WRITE_OFF, 0) == 0


async def test_manual_requests_need_reason_role_and_an_open_balance(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "10.00")
    with pytest.raises(ValidationFailed):
        await writeoffs.request_write_off(inv, "", staff.collections)
    for who in (staff.auditor, staff.support, SYSTEM):
        with pytest.raises(NotPermitted):
            await writeoffs.request_write_off(inv, "x", who)
    with pytest.raises(NotFound):
        await writeoffs.request_write_off(10**12, "x", staff.ops)
    await pay(account, 1000, [(inv, 1000)])
    with pytest.raises(Conflict):
        await writeoffs.request_write_off(inv, "x", staff.ops)
    await assert_books("EUR")


async def test_write_off_rules_are_configurable_by_finance_admins(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "1000.00")
    await pay(account, 99000, [(inv, 99000)])  # 10.00 left: over the 5.00 default
    with pytest.raises(NotPermitted):
        await writeoffs.set_rule("EUR", WriteOffLimits(2000, Decimal(2)), staff.ops)
    limits = writeoffs.parse_rule("eur", "20.00", "2")
    await writeoffs.set_rule("EUR", limits, staff.admin)
    assert await writeoffs.limits_for("EUR") == WriteOffLimits(2000, Decimal(2))
    assert (await writeoffs.write_off_residual(inv, SYSTEM)).status == "written_off"
    with pytest.raises(ValidationFailed) as bad:
        writeoffs.parse_rule("EURO", "abc", "150")
    assert set(bad.value.errors) == {"currency", "max_percent"}
    with pytest.raises(ValidationFailed) as bad:
        writeoffs.parse_rule("JPY", "5.5", "NaN")
    assert set(bad.value.errors) == {"max_amount", "max_percent"}
    await assert_books("EUR")


async def test_approval_after_a_later_payment_writes_off_only_what_is_left(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    await pay(account, 8000, [(inv, 8000)])
    req = await writeoffs.write_off_residual(inv, staff.ops)
    await pay(account, 1500, [(inv, 1500)])
    done = await writeoffs.approve_write_off(req.write_off_id, staff.admin)
    assert done.amount_minor == 500
    assert (await assert_books("EUR"))[acct.WRITE_OFF] == 500


async def test_concurrent_write_offs_of_one_invoice_post_once(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    await pay(account, 9990, [(inv, 9990)])
    results = await asyncio.gather(*(writeoffs.write_off_residual(inv, SYSTEM) for _ in range(5)))
    assert sorted(r.status for r in results) == ["not_needed"] * 4 + ["written_off"]
    assert (await assert_books("EUR"))[acct.WRITE_OFF] == 10


async def test_two_admins_approving_at_once_post_one_write_off(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    request = await writeoffs.request_write_off(inv, "insolvent", staff.ops)

    async def approve(admin) -> str:
        try:
            return (await writeoffs.approve_write_off(request.write_off_id, admin)).status
        except Conflict:
            return "conflict"

    outcomes = await asyncio.gather(approve(staff.admin), approve(staff.admin2))
    assert sorted(outcomes) == ["conflict", "written_off"]
    assert await JournalEntry.count().where(JournalEntry.source_type == "write_off") == 1
    assert (await assert_books("EUR"))[acct.WRITE_OFF] == 10000


# ---------------------------------------------------------------------- unapplied cash


async def test_apply_and_unapply_unapplied_cash_repeatedly(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    first = await open_invoice(account, "100.00")
    payment = await pay(account, 15000, [(first, 10000)])
    second = await open_invoice(account, "30.00")
    third = await open_invoice(account, "40.00")
    ids = await allocations.apply_unapplied(
        payment, [AllocationRequest(second, 3000), AllocationRequest(third, 1500)], staff.ops
    )
    assert len(ids) == 2
    assert (await Payment.select().where(Payment.id == payment).first())["unapplied_minor"] == 500
    assert (await invoice_row(second))["status"] == "paid"
    assert (await invoice_row(third))["balance_minor"] == 2500
    balances = await assert_books("EUR")
    assert balances[acct.UNAPPLIED_CASH] == -500

    for _ in range(2):  # repeated unapply and apply never collide in the ledger
        await allocations.unapply(ids[0], staff.collections, "applied to the wrong invoice")
        assert (await invoice_row(second))[("status")] == "open"
        [ids[0]] = await allocations.apply_unapplied(
            payment, [AllocationRequest(second, 3000)], SYSTEM
        )
    assert await AllocationChange.count() == 6
    assert (await assert_books("EUR"))[acct.UNAPPLIED_CASH] == -500

    # the original allocation of the payment can be taken back too
    original = await Allocation.select().where(Allocation.invoice == first).first()
    await allocations.unapply(original["id"], staff.ops, "bank reversed")
    assert (await invoice_row(first))["balance_minor"] == 10000
    assert (await assert_books("EUR"))[acct.UNAPPLIED_CASH] == -10500
    with pytest.raises(NotFound):
        await allocations.unapply(original["id"], staff.ops, "again")


async def test_apply_refuses_bad_requests_and_changes_nothing(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    other = await sibling_account(account, "OTHER-1")
    payment = await pay(account, 5000, [])
    mine = await open_invoice(account, "100.00")
    theirs = await open_invoice(other, "10.00")
    entries = await JournalEntry.count()
    bad = [
        [AllocationRequest(mine, 6000)],  # over the unapplied cash
        [AllocationRequest(theirs, 500)],  # another account's invoice
        [AllocationRequest(mine, 0)],
        [AllocationRequest(mine, 100), AllocationRequest(mine, 100)],
        [],
    ]
    for items in bad:
        with pytest.raises(ValidationFailed):
            await allocations.apply_unapplied(payment, items, staff.ops)
    with pytest.raises(NotPermitted):
        await allocations.apply_unapplied(payment, [AllocationRequest(mine, 100)], staff.auditor)
    with pytest.raises(NotFound):
        await allocations.apply_unapplied(10**12, [AllocationRequest(mine, 100)], staff.ops)
    with pytest.raises(ValidationFailed):
        await allocations.unapply(1, staff.ops, "")
    assert await JournalEntry.count() == entries
    assert (await Payment.select().where(Payment.id == payment).first())["unapplied_minor"] == 5000
    await assert_books("EUR")


async def test_concurrent_applies_never_over_apply_a_payment(db) -> None:
    account = await billing_account("EUR")
    payment = await pay(account, 5000, [])
    invoices = [await open_invoice(account, "30.00") for _ in range(4)]

    async def apply(invoice_id: int) -> str:
        try:
            await allocations.apply_unapplied(
                payment, [AllocationRequest(invoice_id, 3000)], SYSTEM
            )
        except ValidationFailed:
            return "refused"
        return "ok"

    outcomes = await asyncio.gather(*(apply(i) for i in invoices))
    assert outcomes.count("ok") == 1
    assert (await Payment.select().where(Payment.id == payment).first())["unapplied_minor"] == 2000
    assert (await assert_books("EUR"))[acct.UNAPPLIED_CASH] == -2000


async def test_concurrent_unapplies_of_one_allocation_reopen_once(db) -> None:
    account = await billing_account("EUR")
    inv = await open_invoice(account, "30.00")
    payment = await pay(account, 3000, [(inv, 3000)])
    alloc = await Allocation.select().where(Allocation.payment == payment).first()

    async def take_back() -> str:
        try:
            await allocations.unapply(alloc["id"], SYSTEM, "race")
        except NotFound:
            return "gone"
        return "ok"

    outcomes = await asyncio.gather(*(take_back() for _ in range(3)))
    assert sorted(outcomes) == ["gone", "gone", "ok"]
    assert (await invoice_row(inv))["balance_minor"] == 3000
    assert (await assert_books("EUR"))[acct.UNAPPLIED_CASH] == -3000


# ---------------------------------------------------------------------------- refunds


async def test_refund_of_unapplied_cash_needs_another_finance_admin(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    payment = await pay(account, 12000, [(inv, 10000)])
    with pytest.raises(NotPermitted):
        await refunds.request_refund(payment, 1000, "overpaid", staff.collections)
    with pytest.raises(ValidationFailed) as too_much:
        await refunds.request_refund(payment, 2001, "overpaid", staff.ops)
    assert "amount" in too_much.value.errors
    refund = await refunds.request_refund(payment, 1500, "overpaid", staff.ops)
    with pytest.raises(ValidationFailed):  # only 500 left that is not already requested
        await refunds.request_refund(payment, 600, "more", staff.admin)
    with pytest.raises(NotPermitted):
        await refunds.approve_refund(refund, staff.ops)
    own = await refunds.request_refund(payment, 500, "rest", staff.admin)
    with pytest.raises(Conflict):
        await refunds.approve_refund(own, staff.admin)
    await refunds.reject_refund(own, staff.admin2, "keep it for the next invoice")

    assert await refunds.approve_refund(refund, staff.admin) == "bank"
    row = await Refund.select().where(Refund.id == refund).first()
    assert row["status"] == "processing"
    assert (await Payment.select().where(Payment.id == payment).first())["unapplied_minor"] == 500
    balances = await assert_books("EUR")
    assert balances[acct.CASH] == 12000 - 1500
    assert balances[acct.UNAPPLIED_CASH] == -500
    with pytest.raises(NotPermitted):
        await refunds.mark_paid_out(refund, staff.ops)
    await refunds.mark_paid_out(refund, staff.admin2)
    assert (await Refund.select().where(Refund.id == refund).first())["status"] == "succeeded"


async def test_refund_approval_rechecks_unapplied_cash(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    payment = await pay(account, 2000, [])
    refund = await refunds.request_refund(payment, 2000, "overpaid", staff.ops)
    inv = await open_invoice(account, "15.00")
    await allocations.apply_unapplied(payment, [AllocationRequest(inv, 1500)], staff.ops)
    with pytest.raises(Conflict):
        await refunds.approve_refund(refund, staff.admin)
    assert (await assert_books("EUR"))[acct.UNAPPLIED_CASH] == -500


# -------------------------------------------------------------------- adjusted payments


async def test_short_payment_settlement_recomputes_tax_per_code(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await create_draft(
        account,
        [
            LineInput("Consulting", Decimal(1), Decimal("100.00"), Decimal("0.19"), "STD"),
            LineInput("Books", Decimal(1), Decimal("50.00"), Decimal("0.07"), "RED"),
        ],
        SYSTEM,
    )
    await finalize(inv, SYSTEM)
    # subtotal 150.00, tax 19.00 + 3.50 = 22.50, total 172.50; 10.00 short
    await pay(account, 16250, [(inv, 16250)])
    with pytest.raises(NotPermitted):  # over the 5.00 rule: finance admins only
        await adjustments.settle_invoice(inv, "short_payment", "goodwill", staff.ops)
    with pytest.raises(ValidationFailed):
        await adjustments.settle_invoice(inv, "short_payment", "", staff.admin)
    with pytest.raises(ValidationFailed):
        await adjustments.settle_invoice(inv, "bogus", "x", staff.admin)
    adj = await adjustments.settle_invoice(inv, "short_payment", "goodwill", staff.admin)
    # 10.00 * 150/172.5 = 8.6956 -> 8.70; 19/172.5 -> 1.1014 -> 1.10; 3.5/172.5 -> 0.2029 -> 0.20
    lines = await JournalLine.select(
        JournalLine.account.code.as_alias("code"),
        JournalLine.debit_minor,
        JournalLine.credit_minor,
        JournalLine.tax_code,
    ).where(
        (JournalLine.entry.source_type == "settlement_adjustment")
        & (JournalLine.entry.source_id == adj)
    )
    got = {(r["code"], r["tax_code"]): (r["debit_minor"], r["credit_minor"]) for r in lines}
    assert got == {
        (acct.SALES_DISCOUNTS, ""): (870, 0),
        (acct.TAX_PAYABLE, "STD"): (110, 0),
        (acct.TAX_PAYABLE, "RED"): (20, 0),
        (acct.AR, ""): (0, 1000),
    }
    row = await invoice_row(inv)
    assert (row["status"], row["balance_minor"]) == ("paid", 0)
    credit_lines = await adjustments.credit_lines(inv)
    assert [
        (c["label"], c["amount_minor"], c["net_minor"], c["tax_minor"]) for c in credit_lines
    ] == [("Accepted short payment", 1000, 870, 130)]
    balances = await assert_books("EUR")
    assert balances[acct.TAX_PAYABLE] == -(2250 - 130)
    with pytest.raises(Conflict):
        await adjustments.settle_invoice(inv, "short_payment", "again", staff.admin)


async def test_small_short_payment_can_be_accepted_by_billing_ops(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00", rate="0.19")
    await pay(account, 11800, [(inv, 11800)])  # 1.00 short: within 5.00 and 1 %
    await adjustments.settle_invoice(inv, "short_payment", "bank fees", staff.collections)
    balances = await assert_books("EUR")
    assert balances[acct.SALES_DISCOUNTS] == 84  # 100 * 100/119 = 84.03
    assert balances[acct.TAX_PAYABLE] == -(1900 - 16)


async def test_early_payment_discount_under_terms(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    today = datetime.now(UTC).date()
    with pytest.raises(ValidationFailed):
        adjustments.parse_terms("abc", "-1")
    percent, days = adjustments.parse_terms("2", "10")
    with pytest.raises(NotPermitted):
        await adjustments.set_terms(account, percent, days, staff.collections)
    await adjustments.set_terms(account, percent, days, staff.ops)

    early = await open_invoice(account, "100.00", rate="0.19", issue_date=today)
    await pay(account, 11662, [(early, 11662)])  # 119.00 less 2 % (2.38)
    adj = await adjustments.settle_invoice(early, "early_payment_discount", "", staff.collections)
    assert adj > 0
    assert (await invoice_row(early))["status"] == "paid"

    late = await open_invoice(account, "100.00", rate="0.19", issue_date=today - timedelta(days=30))
    await pay(account, 11662, [(late, 11662)])
    with pytest.raises(ValidationFailed, match="after the discount period"):
        await adjustments.settle_invoice(late, "early_payment_discount", "", staff.ops)

    greedy = await open_invoice(account, "100.00", rate="0.19", issue_date=today)
    await pay(account, 11000, [(greedy, 11000)])
    with pytest.raises(ValidationFailed, match="larger than the discount"):
        await adjustments.settle_invoice(greedy, "early_payment_discount", "", staff.ops)
    balances = await assert_books("EUR")
    assert balances[acct.SALES_DISCOUNTS] == 200
    assert balances[acct.TAX_PAYABLE] == -(1900 * 3 - 38)


async def test_settlement_refused_while_a_write_off_waits(db) -> None:
    staff = await crew()
    account = await billing_account("EUR")
    inv = await open_invoice(account, "100.00")
    await pay(account, 9000, [(inv, 9000)])
    await writeoffs.request_write_off(inv, "dispute", staff.ops)
    with pytest.raises(Conflict):
        await adjustments.settle_invoice(inv, "short_payment", "x", staff.admin)
    await assert_books("EUR")


async def test_refund_of_a_stripe_payment_goes_through_stripe_once(db, stripe_double) -> None:
    previous = gateway._config
    gateway.configure(
        SimpleNamespace(
            stripe_api_key=STRIPE_TEST_KEY,
            stripe_api_base=stripe_double.url,
            stripe_webhook_secret=STRIPE_TEST_WEBHOOK_SECRET,
            base_url="http://127.0.0.1",
        )
    )
    try:
        staff = await crew()
        account = await billing_account("EUR")
        client = gateway.stripe_client()
        intent = client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "confirm": True,
            },
            options={"idempotency_key": f"cash-test-{account}"},
        )
        assert intent.status == "succeeded"
        payment = await pay(account, 5000, [])
        await Payment.update({Payment.stripe_payment_intent: intent.id}).where(
            Payment.id == payment
        )
        refund = await refunds.request_refund(payment, 1200, "overpaid", staff.ops)
        assert await refunds.approve_refund(refund, staff.admin) == "stripe"
        assert await refunds.submit_stripe_refund(refund, staff.admin) == "succeeded"
        row = await Refund.select().where(Refund.id == refund).first()
        assert row["stripe_refund"].startswith("re_")
        # a crash after Stripe's refund and before our commit, then a retry: the same
        # idempotency key returns the same refund at Stripe, never a second one
        await Refund.update({Refund.status: "processing", Refund.stripe_refund: ""}).where(
            Refund.id == refund
        )
        assert await send_waiting_stripe_refunds({}) == 1  # the worker's cron job
        again = await Refund.select().where(Refund.id == refund).first()
        assert again["stripe_refund"] == row["stripe_refund"]
        at_stripe = client.v1.refunds.list(params={"payment_intent": intent.id})
        assert [r.amount for r in at_stripe.data] == [1200]
        balances = await assert_books("EUR")
        assert balances[acct.STRIPE_BALANCE] == -1200  # the charge itself is booked as cash here
        assert balances[acct.UNAPPLIED_CASH] == -3800
    finally:
        gateway._config = previous
