"""finalize_many: checks that hold drafts (approval, approver = creator, locked period,
missing exchange rate, not a draft), gapless numbers under concurrency, the journal
(revenue / deferred revenue, tax payable per code), the audit chain, and bulk speed."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime

import pytest

from core.errors import Conflict, NotFound
from core.invoicing import finalization as fin
from core.invoicing.finalization import finalize_many
from core.invoicing.services import (
    approve_draft,
    create_draft,
    finalize,
    set_account_approval,
    set_invoicing_policy,
    void,
)
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger import export as gl_export
from core.ledger.periods import PeriodLockedError, lock_period, period_of, unlock_period
from core.ledger.posting import EntrySpec, account_balances, post
from core.ledger.rules import credit, debit
from core.ledger.tables import JournalEntry
from core.tax.services import add_exemption
from tests.integration.factories import lines
from tests.integration.finance_support import (
    APPROVER,
    CREATOR,
    assert_books_balanced,
    bulk_drafts,
    entity_account,
)

DAY = date(2026, 3, 10)


async def test_finalize_many_numbers_posts_and_holds_the_rest(db) -> None:
    entity, account = await entity_account()
    drafts = await bulk_drafts(account, entity, 3)
    report = await finalize_many([*drafts, 999_999], CREATOR, issue_date=DAY)
    assert report.finalized == {
        drafts[0]: "INV-DE-2026-000001",
        drafts[1]: "INV-DE-2026-000002",
        drafts[2]: "INV-DE-2026-000003",
    }
    assert report.held_codes == {999_999: fin.NOT_FOUND}
    row = await Invoice.select().where(Invoice.id == drafts[0]).first()
    assert (row["status"], row["issue_date"], row["due_date"]) == ("open", DAY, date(2026, 3, 24))
    assert (row["functional_currency"], row["fx_rate"], row["fx_source"]) == ("EUR", 1, "identity")
    balances = await account_balances("EUR")
    assert balances[acct.AR] == 3 * 11900
    assert balances[acct.REVENUE] == -3 * 10000
    assert balances[acct.TAX_PAYABLE] == -3 * 1900
    await assert_books_balanced("EUR")

    again = await finalize_many(drafts, CREATOR, issue_date=DAY)
    assert again.finalized == {}
    assert set(again.held_codes.values()) == {fin.NOT_DRAFT}
    with pytest.raises(Conflict, match="only a draft"):
        await finalize(drafts[0], CREATOR)
    with pytest.raises(NotFound):
        await finalize(999_999, CREATOR)


async def test_deferred_revenue_lines_post_to_deferred_revenue(db) -> None:
    entity, account = await entity_account()
    drafts = await bulk_drafts(account, entity, 2, revenue_account=acct.DEFERRED_REVENUE)
    bad = await bulk_drafts(account, entity, 1, revenue_account="9999")
    report = await finalize_many([*drafts, *bad], CREATOR, issue_date=DAY)
    assert len(report.finalized) == 2
    assert report.held_codes == {bad[0]: fin.BAD_LINE}
    balances = await account_balances("EUR")
    assert balances[acct.DEFERRED_REVENUE] == -20000
    assert acct.REVENUE not in balances
    await assert_books_balanced("EUR")


async def test_threshold_needs_approval_by_someone_other_than_the_creator(db) -> None:
    entity, account = await entity_account()
    await set_invoicing_policy(entity, 50_000, "", APPROVER)  # 500.00 EUR
    small = await create_draft(account, lines("100.00"), CREATOR)
    large = await create_draft(account, lines("600.00"), CREATOR)
    report = await finalize_many([small, large], CREATOR, issue_date=DAY)
    assert list(report.finalized) == [small]
    assert report.held_codes == {large: fin.APPROVAL_NEEDED}
    assert "approval threshold" in report.held[large]
    row = await Invoice.select(Invoice.status, Invoice.approval_status).where(Invoice.id == large)
    assert row == [{"status": "draft", "approval_status": "pending"}]

    with pytest.raises(Conflict, match="created this draft cannot approve"):
        await approve_draft(large, CREATOR)
    await approve_draft(large, APPROVER)
    with pytest.raises(Conflict, match="already approved"):
        await approve_draft(large, APPROVER)
    assert await finalize(large, CREATOR, issue_date=DAY) == "INV-DE-2026-000002"
    await assert_books_balanced("EUR")


async def test_account_flag_requires_approval_and_self_approval_is_held(db) -> None:
    entity, account = await entity_account()
    await set_account_approval(account, True, "new customer", APPROVER)
    [draft] = await bulk_drafts(account, entity, 1, amount_minor=100, created_by="staff:2")
    report = await finalize_many([draft], CREATOR, issue_date=DAY)
    assert "billing account requires approval" in report.held[draft]
    # Approved by its own creator (data from elsewhere): still held.
    await Invoice.update(
        {Invoice.approval_status: "approved", Invoice.approved_by: "staff:2"}
    ).where(Invoice.id == draft)
    report = await finalize_many([draft], CREATOR, issue_date=DAY)
    assert report.held_codes == {draft: fin.APPROVER_IS_CREATOR}
    await set_account_approval(account, False, "vetted", APPROVER)
    await Invoice.update({Invoice.approval_status: "not_required"}).where(Invoice.id == draft)
    assert (await finalize_many([draft], CREATOR, issue_date=DAY)).finalized


async def test_locked_period_holds_finalization_and_refuses_postings(db) -> None:
    entity, account = await entity_account()
    first, second = await bulk_drafts(account, entity, 2)
    assert (await finalize_many([first], CREATOR, issue_date=DAY)).finalized
    await lock_period(entity, "2026-03", "March closed", APPROVER)
    with pytest.raises(Conflict, match="already locked"):
        await lock_period(entity, "2026-03", "again", APPROVER)
    report = await finalize_many([second], CREATOR, issue_date=DAY)
    assert report.held_codes == {second: fin.PERIOD_LOCKED}
    assert "2026-03 is locked" in report.held[second]
    # April is open.
    assert (await finalize_many([second], CREATOR, issue_date=date(2026, 4, 1))).finalized
    entries = await JournalEntry.count()
    with pytest.raises(PeriodLockedError, match="2026-03 is locked"):
        await post(
            EntrySpec(
                entity,
                "EUR",
                date(2026, 3, 31),
                "test",
                1,
                "x",
                "",
                [debit(acct.CASH, 1), credit(acct.REVENUE, 1)],
            )
        )
    assert await JournalEntry.count() == entries
    await unlock_period(entity, "2026-03", "late adjustment", APPROVER)
    this_month = period_of(datetime.now(UTC).date())
    await lock_period(entity, this_month, "closing", APPROVER)
    with pytest.raises(PeriodLockedError):
        await void(first, CREATOR, reason="issued_in_error")  # a void is dated today
    assert (await Invoice.select(Invoice.status).where(Invoice.id == first).first())[
        "status"
    ] == "open"
    await unlock_period(entity, this_month, "reopened", APPROVER)
    await void(first, CREATOR, reason="issued_in_error")
    await assert_books_balanced("EUR")


async def test_pending_tax_is_computed_while_finalizing(db) -> None:
    entity, domestic = await entity_account(code="DOM")
    _, reverse = await entity_account(code="RC", buyer_country="FR", buyer_vat="FR40303265045")
    _, bad_vat = await entity_account(code="NOVAT", buyer_country="FR", buyer_vat="FR00000000000")
    ids = []
    for account in (domestic, reverse, bad_vat):
        ids += await bulk_drafts(account, entity, 1, tax_status="pending", amount_minor=10001)
    report = await finalize_many(ids, CREATOR, issue_date=DAY)
    assert len(report.finalized) == 3, report.held
    rows = (
        await Invoice.select(
            Invoice.id, Invoice.tax_minor, Invoice.total_minor, Invoice.tax_status, Invoice.tax_note
        )
        .where(Invoice.id.is_in(ids))
        .order_by(Invoice.id)
    )
    # 100.01 * 19% = 19.0019 → 19.00 (rounded once, half-even)
    assert [(r["tax_minor"], r["tax_status"]) for r in rows] == [
        (1900, "calculated"),
        (0, "calculated"),
        (1900, "calculated"),
    ]
    assert rows[1]["tax_note"].startswith("Reverse charge")
    balances = await account_balances("EUR")
    assert balances[acct.TAX_PAYABLE] == -3800
    await assert_books_balanced("EUR")

    # The tax code travels to the journal and the GL export.
    exported = gl_export.to_csv(await gl_export.gl_lines(DAY, DAY, entity)).splitlines()
    assert exported[0].startswith("effective_date,entry_id,issuing_entity")
    tax_rows = [r for r in exported if ",2200,Tax payable," in r]
    assert len(tax_rows) == 2
    assert all(r.endswith(",19.00,STD,") for r in tax_rows)
    assert sum(",1100," in r for r in exported) == 3
    assert ",4000,Revenue,EUR,,100.01,," in exported[2]


def test_gl_export_neutralizes_spreadsheet_formulas() -> None:
    row = {
        "effective_date": DAY,
        "entry_id": 1,
        "entity_code": "DE",
        "source_type": "invoice",
        "source_id": 1,
        "event": "finalized",
        "description": "=HYPERLINK(1)",
        "account_code": "1100",
        "account_name": "AR",
        "currency": "JPY",
        "debit_minor": 1500,
        "credit_minor": 0,
        "tax_code": "",
        "billing_account_code": "@ACME",
    }
    line = gl_export.to_csv([row]).splitlines()[1]
    assert line == "2026-03-10,1,DE,invoice,1,finalized,'=HYPERLINK(1),1100,AR,JPY,1500,,,'@ACME"


async def test_tax_that_cannot_be_computed_holds_the_draft(db) -> None:
    entity, account = await entity_account(
        entity="JP", country="JP", functional="JPY", currency_code="JPY", buyer_country="JP"
    )
    [draft] = await bulk_drafts(account, entity, 1, currency_code="JPY", tax_status="pending")
    report = await finalize_many([draft], CREATOR, issue_date=DAY)
    assert report.held_codes == {draft: fin.TAX_MISSING}
    assert "no tax rate for JP STD" in report.held[draft]


async def test_exempt_customer_is_not_taxed(db) -> None:
    entity, account = await entity_account(code="EXEMPT")
    org = (await Invoice.raw("SELECT organization FROM billing_account WHERE id = {}", account))[0][
        "organization"
    ]
    await add_exemption(org, "CERT-2026-17", None, APPROVER)
    [draft] = await bulk_drafts(account, entity, 1, tax_status="pending")
    assert (await finalize_many([draft], CREATOR, issue_date=DAY)).finalized
    row = await Invoice.select(Invoice.tax_minor, Invoice.tax_status, Invoice.tax_note).where(
        Invoice.id == draft
    )
    assert row == [
        {"tax_minor": 0, "tax_status": "exempt", "tax_note": "Tax exempt: certificate CERT-2026-17"}
    ]
    await assert_books_balanced("EUR")


async def test_number_format_is_configurable_per_entity(db) -> None:
    entity, account = await entity_account()
    await set_invoicing_policy(entity, None, "{entity}/{doc}/{yy}/{seq:04}", APPROVER)
    [draft] = await bulk_drafts(account, entity, 1)
    assert await finalize(draft, CREATOR, issue_date=DAY) == "DE/INV/26/0001"


async def test_concurrent_finalize_many_over_one_series_is_gapless(db) -> None:
    entity, account = await entity_account()
    drafts = await bulk_drafts(account, entity, 200)
    batches = [drafts[i::4] for i in range(4)]
    reports = await asyncio.gather(*(finalize_many(b, CREATOR, issue_date=DAY) for b in batches))
    numbers = [n for r in reports for n in r.finalized.values()]
    assert len(numbers) == len(set(numbers)) == 200
    assert sorted(int(n.rsplit("-", 1)[1]) for n in numbers) == list(range(1, 201))
    await assert_books_balanced("EUR")


async def test_bulk_finalize_speed_sanity(db) -> None:
    entity, account = await entity_account()
    drafts = await bulk_drafts(account, entity, 2000)
    started = time.perf_counter()
    report = await finalize_many(drafts, CREATOR, issue_date=DAY)
    elapsed = time.perf_counter() - started
    print(f"\nfinalize_many: 2000 drafts in {elapsed:.2f} s ({2000 / elapsed:.0f}/s)")
    assert len(report.finalized) == 2000
    assert await JournalEntry.count() == 2000
    await assert_books_balanced("EUR")
