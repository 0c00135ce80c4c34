"""Invoices and payments post balanced entries; AR equals the open balances; numbers
are gapless per series even under concurrent finalization; bad input changes nothing."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from core.errors import Conflict, ValidationFailed
from core.invoicing.services import create_draft, finalize, mark_uncollectible, void
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, account_balances, post, trial_balance_difference
from core.ledger.rules import UnbalancedEntryError, credit, debit
from core.ledger.tables import JournalEntry, JournalLine
from core.payments.allocation import AllocationRequest
from core.payments.services import record_payment
from core.payments.tables import Payment
from tests.integration.factories import SYSTEM, billing_account, lines


async def open_balance_sum(currency_code: str) -> int:
    rows = await Invoice.select(Invoice.balance_minor).where(
        (Invoice.status == "open") & (Invoice.currency == currency_code)
    )
    return sum(r["balance_minor"] for r in rows)


async def test_invoice_lifecycle_posts_balanced_entries(db) -> None:
    account = await billing_account("EUR")
    inv = await create_draft(account, lines("100.00", "50.005"), SYSTEM)
    draft = await Invoice.select().where(Invoice.id == inv).first()
    # 50.005 rounds half-even to 50.00; tax 19% of each line, rounded per line
    assert (draft["subtotal_minor"], draft["tax_minor"], draft["total_minor"]) == (
        15000,
        2850,
        17850,
    )
    assert await JournalEntry.count() == 0  # a draft posts nothing

    number = await finalize(inv, SYSTEM, issue_date=date(2026, 3, 1))
    assert number == "INV-DE-2026-000001"
    opened = await Invoice.select().where(Invoice.id == inv).first()
    assert opened["status"] == "open"
    assert opened["due_date"] == date(2026, 3, 15)
    balances = await account_balances("EUR")
    assert balances[acct.AR] == 17850
    assert balances[acct.REVENUE] == -15000
    assert balances[acct.TAX_PAYABLE] == -2850

    await record_payment(
        billing_account_id=account,
        amount_minor=20000,
        currency_code="EUR",
        method="bank_transfer",
        reference="wire 1",
        allocations=[AllocationRequest(inv, 17850)],
        actor=SYSTEM,
    )
    paid = await Invoice.select().where(Invoice.id == inv).first()
    assert (paid["status"], paid["balance_minor"], paid["paid_minor"]) == ("paid", 0, 17850)
    balances = await account_balances("EUR")
    assert balances[acct.CASH] == 20000
    assert balances[acct.AR] == 0 == await open_balance_sum("EUR")
    assert balances[acct.UNAPPLIED_CASH] == -2150
    assert await trial_balance_difference() == 0

    with pytest.raises(Conflict):
        await finalize(inv, SYSTEM)
    with pytest.raises(Conflict):
        await void(inv, SYSTEM, reason="x")


async def test_void_keeps_the_number_and_reverses_the_books(db) -> None:
    account = await billing_account("EUR")
    first = await create_draft(account, lines("10.00"), SYSTEM)
    second = await create_draft(account, lines("20.00"), SYSTEM)
    n1 = await finalize(first, SYSTEM, issue_date=date(2026, 5, 1))
    await void(first, SYSTEM, reason="issued_in_error")
    n2 = await finalize(second, SYSTEM, issue_date=date(2026, 5, 2))
    voided = await Invoice.select().where(Invoice.id == first).first()
    assert (voided["status"], voided["number"]) == ("void", n1)
    assert n2.endswith("000002")  # the voided number is never reused
    assert (await account_balances("EUR"))[acct.AR] == await open_balance_sum("EUR") == 2380


async def test_uncollectible_writes_off_the_remaining_balance(db) -> None:
    account = await billing_account("USD")
    inv = await create_draft(account, lines("1000.00", rate="0"), SYSTEM)
    await finalize(inv, SYSTEM)
    await record_payment(
        billing_account_id=account,
        amount_minor=40000,
        currency_code="USD",
        method="card",
        reference="p",
        allocations=[AllocationRequest(inv, 40000)],
        actor=SYSTEM,
    )
    await mark_uncollectible(inv, SYSTEM, reason="insolvent")
    balances = await account_balances("USD")
    assert balances[acct.WRITE_OFF] == 60000
    assert balances[acct.AR] == 0 == await open_balance_sum("USD")


async def test_unbalanced_entry_writes_nothing(db) -> None:
    account = await billing_account("EUR")
    spec = EntrySpec(
        issuing_entity_id=1,
        currency="EUR",
        effective_date=date(2026, 1, 1),
        source_type="test",
        source_id=account,
        event="bad",
        description="",
        lines=[debit(acct.AR, 100), credit(acct.REVENUE, 99)],
    )
    with pytest.raises(UnbalancedEntryError):
        await post(spec)
    assert await JournalEntry.count() == 0
    assert await JournalLine.count() == 0


async def test_bad_payment_changes_nothing(db) -> None:
    account = await billing_account("EUR")
    inv = await create_draft(account, lines("10.00"), SYSTEM)
    await finalize(inv, SYSTEM)
    entries_before = await JournalEntry.count()
    with pytest.raises(ValidationFailed):
        await record_payment(
            billing_account_id=account,
            amount_minor=5000,
            currency_code="EUR",
            method="card",
            reference="too much",
            allocations=[AllocationRequest(inv, 5000)],
            actor=SYSTEM,
        )
    assert await Payment.count() == 0
    assert await JournalEntry.count() == entries_before
    assert (await Invoice.select(Invoice.balance_minor).where(Invoice.id == inv).first())[
        "balance_minor"
    ] == 1190


async def test_concurrent_finalizations_get_gapless_unique_numbers(db) -> None:
    account = await billing_account("EUR")
    drafts = [await create_draft(account, lines("1.00"), SYSTEM) for _ in range(30)]
    numbers = await asyncio.gather(
        *(finalize(d, SYSTEM, issue_date=date(2026, 7, 1)) for d in drafts)
    )
    sequences = sorted(int(n.rsplit("-", 1)[1]) for n in numbers)
    assert sequences == list(range(1, 31))


async def test_concurrent_payments_never_overpay_an_invoice(db) -> None:
    account = await billing_account("EUR")
    inv = await create_draft(account, lines("100.00", rate="0"), SYSTEM)
    await finalize(inv, SYSTEM)

    async def pay() -> str:
        try:
            await record_payment(
                billing_account_id=account,
                amount_minor=6000,
                currency_code="EUR",
                method="card",
                reference="race",
                allocations=[AllocationRequest(inv, 6000)],
                actor=SYSTEM,
            )
        except ValidationFailed:
            return "refused"
        return "ok"

    outcomes = await asyncio.gather(*(pay() for _ in range(5)))
    assert outcomes.count("ok") == 1
    row = await Invoice.select().where(Invoice.id == inv).first()
    assert (row["paid_minor"], row["balance_minor"]) == (6000, 4000)
    assert (await account_balances("EUR"))[acct.AR] == 4000


async def test_demo_books_balance_and_ar_equals_open_invoices(demo_db) -> None:
    assert await trial_balance_difference() == 0
    for code in ("USD", "EUR"):
        assert (await account_balances(code))[acct.AR] == await open_balance_sum(code)
