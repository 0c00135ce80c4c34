"""Realized FX gain/loss: money applied to an invoice in a currency other than its
issuer's functional currency posts the difference between the invoice's frozen rate and
the rate of the application date, in the functional currency (FX gain/loss against AR FX
revaluation). Recording a payment, applying unapplied cash later and the bulk statement
path all post it; taking an allocation back reverses it; no rate at all flags it and the
payment still goes through. The books balance per currency throughout."""

from __future__ import annotations

from datetime import UTC, date, datetime

from core.audit.tables import AuditEvent
from core.cash.allocations import apply_unapplied, unapply
from core.db import transaction
from core.fx.services import add_manual_rate
from core.fx.tables import ExchangeRate
from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances
from core.ledger.tables import JournalEntry, LedgerAccount
from core.payments.allocation import AllocationRequest
from core.payments.services import record_payment
from core.payments.tables import Allocation
from core.remittance import bulk
from tests.integration.factories import SYSTEM, lines
from tests.integration.finance_support import APPROVER, assert_books_balanced, entity_account

ISSUED = date(2026, 3, 2)


async def eur_invoice_of_usd_entity(amount: str = "1000.00", code: str = "FX-1") -> tuple[int, int]:
    """(billing account, open invoice): a EUR invoice issued by the USD entity at 1.10."""
    await add_manual_rate("EUR", "USD", "1.10", ISSUED, APPROVER)
    _, account = await entity_account(
        entity="US", country="US", functional="USD", currency_code="EUR", code=code
    )
    draft = await create_draft(account, lines(amount, rate="0"), SYSTEM)
    await finalize(draft, SYSTEM, issue_date=ISSUED)
    return account, draft


async def fx_balances() -> tuple[int, int]:
    usd = await account_balances("USD")
    return usd.get(acct.FX_GAIN_LOSS, 0), usd.get(acct.AR_FX_REVALUATION, 0)


async def assert_balanced_per_currency() -> None:
    for code in ("EUR", "USD"):
        assert sum((await account_balances(code)).values()) == 0, code
    await assert_books_balanced("EUR")


async def pay(account: int, invoice: int, amount: int, received: datetime, extra: int = 0) -> int:
    return await record_payment(
        billing_account_id=account,
        amount_minor=amount + extra,
        currency_code="EUR",
        method="bank_transfer",
        reference="wire",
        allocations=[AllocationRequest(invoice, amount)] if amount else [],
        actor=SYSTEM,
        received_at=received,
    )


async def test_payment_at_a_lower_rate_posts_the_exact_loss(db) -> None:
    account, invoice = await eur_invoice_of_usd_entity()
    frozen = await Invoice.select(Invoice.fx_rate, Invoice.functional_currency).first()
    assert (str(frozen["fx_rate"]).rstrip("0"), frozen["functional_currency"]) == ("1.1", "USD")
    await add_manual_rate("EUR", "USD", "1.05", date(2026, 3, 20), APPROVER)

    await pay(account, invoice, 100000, datetime(2026, 3, 20, 10, tzinfo=UTC))

    # 1,000.00 EUR booked at 1,100.00 USD, settled at 1,050.00 USD: a 50.00 USD loss.
    assert await fx_balances() == (5000, -5000)
    [entry] = await JournalEntry.select().where(JournalEntry.event == "fx_realized")
    assert (entry["currency"], entry["source_type"], entry["effective_date"]) == (
        "USD",
        "allocation",
        date(2026, 3, 20),
    )
    [alloc] = await Allocation.select(Allocation.id)
    assert entry["source_id"] == alloc["id"]
    assert (await account_balances("EUR")).get(acct.AR, 0) == 0
    assert await LedgerAccount.exists().where(LedgerAccount.code == acct.AR_FX_REVALUATION)
    await assert_balanced_per_currency()


async def test_applying_unapplied_cash_later_uses_the_latest_earlier_rate(db) -> None:
    account, invoice = await eur_invoice_of_usd_entity("500.00")
    # Money arrives unapplied; it is applied today, when the newest rate is from April.
    payment = await pay(account, invoice, 0, datetime(2026, 3, 5, tzinfo=UTC), extra=50000)
    await add_manual_rate("EUR", "USD", "1.20", date(2026, 4, 1), APPROVER)
    assert await fx_balances() == (0, 0)

    [allocation] = await apply_unapplied(payment, [AllocationRequest(invoice, 30000)], SYSTEM)
    # 300.00 EUR x (1.20 - 1.10) = a 30.00 USD gain.
    assert await fx_balances() == (-3000, 3000)
    await assert_balanced_per_currency()

    await unapply(allocation, SYSTEM, reason="applied to the wrong invoice")
    assert await fx_balances() == (0, 0)
    reversed_ = await JournalEntry.select().where(JournalEntry.event == "fx_reversed")
    assert [(e["source_type"], e["currency"]) for e in reversed_] == [("allocation_change", "USD")]
    await assert_balanced_per_currency()


async def test_no_rate_at_all_flags_and_still_records_the_payment(db) -> None:
    account, invoice = await eur_invoice_of_usd_entity("200.00")
    await ExchangeRate.delete(force=True)

    payment = await pay(account, invoice, 20000, datetime(2026, 3, 20, tzinfo=UTC))

    assert payment > 0
    assert (await Invoice.select(Invoice.status).first())["status"] == "paid"
    assert await fx_balances() == (0, 0)
    [flag] = await AuditEvent.select().where(AuditEvent.action == "fx.realized_skipped")
    assert (flag["object_type"], flag["object_id"], flag["reason_code"]) == (
        "invoice",
        str(invoice),
        "fx_missing",
    )
    await assert_balanced_per_currency()


async def test_same_currency_posts_nothing(db) -> None:
    _, account = await entity_account(code="SAME-1")  # EUR entity, EUR account
    draft = await create_draft(account, lines("100.00", rate="0"), SYSTEM)
    await finalize(draft, SYSTEM, issue_date=ISSUED)
    await pay(account, draft, 10000, datetime.now(UTC))
    assert not await JournalEntry.exists().where(JournalEntry.event == "fx_realized")
    await assert_balanced_per_currency()


async def test_bulk_statement_path_posts_the_difference(db) -> None:
    account, invoice = await eur_invoice_of_usd_entity("1000.00", code="FX-BULK")
    await add_manual_rate("EUR", "USD", "1.05", date(2026, 3, 20), APPROVER)
    row = await Invoice.select(Invoice.issuing_entity).where(Invoice.id == invoice).first()
    plan = bulk.PaymentPlan(
        key=1,
        billing_account_id=account,
        issuing_entity_id=row["issuing_entity"],
        currency="EUR",
        amount_minor=60000,
        allocations=((invoice, 60000),),
        reference="statement line 1",
        value_date=date(2026, 3, 20),
        audit={},
    )
    async with transaction():
        conn = bulk.connection()
        ok, refused = await bulk.lock_and_check(conn, [plan])
        assert (len(ok), refused) == (1, [])
        ledger_ids = {r["code"]: r["id"] for r in await LedgerAccount.select()}
        rows = bulk.build_rows(
            ok, await bulk.reserve_ids(conn, len(ok)), datetime.now(UTC), ledger_ids
        )
        await bulk.write_rows(conn, rows)

    # 600.00 EUR x (1.05 - 1.10) = a 30.00 USD loss.
    assert await fx_balances() == (3000, -3000)
    await assert_balanced_per_currency()
