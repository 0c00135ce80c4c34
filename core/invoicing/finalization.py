"""Finalizing drafts in bulk: checks, gapless numbers, frozen FX, journal, audit.

``finalize_many`` is one transaction for a whole batch. A draft that fails a check is
*held*: it stays a draft and the reason is returned; the others are finalized. The
work is set-based (a constant number of statements per batch, not per invoice):

1. outside the transaction: compute the tax of drafts whose tax is still pending
   (an HTTP provider must never be called while rows are locked);
2. lock the invoices (``FOR UPDATE``, id order) and store the computed tax;
3. checks: still a draft, tax computed or estimated, exchange rate available, approval
   where the amount or the account requires one (approver ≠ creator), period open;
4. per series (issuing entity, jurisdiction, document type, year), lock the counter
   once and take a block of numbers: gapless, in invoice id order;
5. one UPDATE for all invoices, one INSERT for all journal entries and one for their
   lines (AR against revenue / deferred revenue and tax payable per tax code), one
   bulk append to the audit chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from core.audit.log import Actor, AuditRecord, record_many
from core.db import for_update, transaction
from core.fx.rates import convert_minor
from core.fx.services import MAX_RATE_AGE_DAYS, RateQuote, find_rate
from core.invoicing.bulk import among, insert_rows, update_rows
from core.invoicing.numbering import take_numbers
from core.invoicing.rules import DOCUMENT_CODES, approval_required, due_date
from core.invoicing.tables import AccountApprovalRule, Invoice, InvoiceLine, InvoicingPolicy
from core.ledger import accounts as acct
from core.ledger.periods import locked_periods, period_of
from core.ledger.rules import LineSpec, check_balanced, without_zero_lines
from core.ledger.tables import JournalEntry, JournalLine, LedgerAccount
from core.tax.services import apply_draft_taxes, compute_drafts

REVENUE_ACCOUNTS = frozenset({acct.REVENUE, acct.DEFERRED_REVENUE})

# Why a draft was held (``FinalizeReport.held_codes``).
NOT_FOUND = "not_found"
NOT_DRAFT = "not_draft"
TAX_MISSING = "tax_missing"
FX_MISSING = "fx_missing"
APPROVAL_NEEDED = "approval_needed"
APPROVER_IS_CREATOR = "approver_is_creator"
PERIOD_LOCKED = "period_locked"
CHANGED = "changed"
BAD_LINE = "bad_line"


@dataclass
class FinalizeReport:
    finalized: dict[int, str] = field(default_factory=dict)  # invoice id → number
    held: dict[int, str] = field(default_factory=dict)  # invoice id → reason
    held_codes: dict[int, str] = field(default_factory=dict)  # invoice id → code

    def hold(self, invoice_id: int, code: str, reason: str) -> None:
        self.held[invoice_id] = reason
        self.held_codes[invoice_id] = code


def actor_ref(actor: Actor) -> str:
    """How an actor is written in ``created_by`` / ``approved_by``: ``staff:12``."""
    return f"{actor.type}:{actor.id}"[:64]


def _signed(
    code: str, amount: int, reverse: bool, billing_account_id: int | None = None, tax_code: str = ""
) -> LineSpec:
    """A credit of ``amount`` (a debit when negative), or the opposite when reversing."""
    if (amount >= 0) != reverse:
        return LineSpec(code, 0, abs(amount), billing_account_id, tax_code)
    return LineSpec(code, abs(amount), 0, billing_account_id, tax_code)


def invoice_entry_lines(
    total_minor: int,
    lines: Sequence[dict[str, Any]],
    billing_account_id: int,
    reverse: bool = False,
) -> list[LineSpec]:
    """Pure: AR against revenue per revenue account and tax payable per tax code (or
    the exact reversal), zero lines dropped, checked balanced."""
    revenue: dict[str, int] = {}
    tax: dict[str, int] = {}
    for line in lines:
        account = line.get("revenue_account") or acct.REVENUE
        revenue[account] = revenue.get(account, 0) + int(line["amount_minor"])
        if line["tax_minor"]:
            code = line.get("tax_code") or ""
            tax[code] = tax.get(code, 0) + int(line["tax_minor"])
    specs = [_signed(acct.AR, -total_minor, reverse, billing_account_id=billing_account_id)]
    specs += [
        _signed(code, amount, reverse, billing_account_id=billing_account_id)
        for code, amount in sorted(revenue.items())
    ]
    specs += [
        _signed(acct.TAX_PAYABLE, amount, reverse, tax_code=code)
        for code, amount in sorted(tax.items())
    ]
    specs = without_zero_lines(specs)
    if specs:
        check_balanced(specs)
    return specs


async def _account_ids() -> dict[str, int]:
    rows = await LedgerAccount.select(LedgerAccount.id, LedgerAccount.code)
    return {r["code"]: int(r["id"]) for r in rows}


async def _lines_of(invoice_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    if not invoice_ids:
        return out
    rows = await InvoiceLine.select(
        InvoiceLine.invoice,
        InvoiceLine.amount_minor,
        InvoiceLine.tax_minor,
        InvoiceLine.tax_code,
        InvoiceLine.revenue_account,
    ).where(among(InvoiceLine.invoice, invoice_ids))
    for row in rows:
        out.setdefault(int(row["invoice"]), []).append(row)
    return out


async def post_invoice_entries(
    invoices: Sequence[dict[str, Any]],
    event: str,
    reverse: bool = False,
    lines_by: dict[int, list[dict[str, Any]]] | None = None,
) -> None:
    """Bulk-post each invoice's entry (inside the caller's transaction). Each invoice
    dict has id, issuing_entity, billing_account, currency, total_minor, effective
    (date) and description. Period locks are the caller's check."""
    if not invoices:
        return
    accounts = await _account_ids()
    if lines_by is None:
        lines_by = await _lines_of([int(i["id"]) for i in invoices])
    now = datetime.now(UTC)
    entries: list[dict[str, Any]] = []
    specs_by: dict[int, list[LineSpec]] = {}
    for inv in invoices:
        specs = invoice_entry_lines(
            int(inv["total_minor"]),
            lines_by.get(int(inv["id"]), []),
            inv["billing_account"],
            reverse,
        )
        if not specs:
            continue  # a zero invoice moves no money
        specs_by[int(inv["id"])] = specs
        entries.append(
            {
                "issuing_entity": inv["issuing_entity"],
                "currency": inv["currency"],
                "effective_date": inv["effective"],
                "description": inv["description"],
                "source_type": "invoice",
                "source_id": int(inv["id"]),
                "event": event,
                "posted_at": now,
            }
        )
    created = await insert_rows(
        JournalEntry,
        {
            "issuing_entity": "bigint",
            "currency": "text",
            "effective_date": "date",
            "description": "text",
            "source_type": "text",
            "source_id": "bigint",
            "event": "text",
            "posted_at": "timestamptz",
        },
        entries,
        returning=("id", "source_id"),
    )
    entry_of = {int(r["source_id"]): int(r["id"]) for r in created}
    journal_lines = [
        {
            "entry": entry_of[invoice_id],
            "account": accounts[spec.account],
            "billing_account": spec.billing_account_id,
            "debit_minor": spec.debit_minor,
            "credit_minor": spec.credit_minor,
            "tax_code": spec.tax_code,
        }
        for invoice_id, specs in specs_by.items()
        for spec in specs
    ]
    await insert_rows(
        JournalLine,
        {
            "entry": "bigint",
            "account": "bigint",
            "billing_account": "bigint",
            "debit_minor": "bigint",
            "credit_minor": "bigint",
            "tax_code": "text",
        },
        journal_lines,
    )


_TAX_COLUMNS = {
    "id": "bigint",
    "tax_minor": "bigint",
    "total_minor": "bigint",
    "balance_minor": "bigint",
    "tax_status": "text",
    "tax_note": "text",
}


def _tax_values(row: dict[str, Any]) -> dict[str, Any]:
    total = int(row["subtotal_minor"]) + int(row["tax_minor"])
    return {
        "id": int(row["id"]),
        "tax_minor": int(row["tax_minor"]),
        "total_minor": total,
        "balance_minor": total,
        "tax_status": row["tax_status"],
        "tax_note": (row["tax_note"] or "")[:200],
    }


async def _lock_invoices(ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = await for_update(
        Invoice.select(
            Invoice.id,
            Invoice.status,
            Invoice.billing_account,
            Invoice.issuing_entity,
            Invoice.currency,
            Invoice.issue_date,
            Invoice.subtotal_minor,
            Invoice.tax_minor,
            Invoice.total_minor,
            Invoice.created_by,
            Invoice.document_type,
            Invoice.tax_status,
            Invoice.tax_note,
            Invoice.approval_status,
            Invoice.approved_by,
            Invoice.billing_account.payment_terms_days.as_alias("terms"),
            Invoice.issuing_entity.code.as_alias("entity_code"),
            Invoice.issuing_entity.country.as_alias("entity_country"),
            Invoice.issuing_entity.functional_currency.as_alias("entity_functional"),
        )
        .where(among(Invoice.id, ids))
        .order_by(Invoice.id)
    )
    return {int(r["id"]): r for r in rows}


async def finalize_many(
    invoice_ids: Sequence[int], actor: Actor, issue_date: date | None = None
) -> FinalizeReport:
    """Finalize drafts in one transaction; drafts failing a check are held (see module)."""
    report = FinalizeReport()
    ids = sorted({int(i) for i in invoice_ids})
    if not ids:
        return report
    today = datetime.now(UTC).date()
    taxes, tax_failed = await compute_drafts(ids, issue_date or today, pending_only=True)
    events: list[AuditRecord] = []

    async with transaction():
        rows = await _lock_invoices(ids)
        for invoice_id in ids:
            if invoice_id not in rows:
                report.hold(invoice_id, NOT_FOUND, "invoice not found")

        # Store tax computed for drafts that are still pending and unchanged.
        applied = []
        for invoice_id, tax in taxes.items():
            row = rows.get(invoice_id)
            if row is None or row["status"] != "draft" or row["tax_status"] != "pending":
                continue
            if row["subtotal_minor"] != tax.subtotal_minor:
                report.hold(invoice_id, CHANGED, "the draft changed while finalizing; retry")
                continue
            applied.append(tax)
            row["tax_minor"] = tax.result.tax_minor
            row["total_minor"] = row["subtotal_minor"] + tax.result.tax_minor
            row["tax_status"] = tax.result.status
            row["tax_note"] = tax.result.note
        await apply_draft_taxes(applied, invoices=False)  # invoice totals: below

        # Policies, rates and locks for the whole batch.
        candidates = [r for i, r in rows.items() if i not in report.held and r["status"] == "draft"]
        for i, r in rows.items():
            if r["status"] != "draft" and i not in report.held:
                report.hold(
                    i, NOT_DRAFT, f"only a draft can be finalized; this one is {r['status']}"
                )
        entity_ids = sorted({int(r["issuing_entity"]) for r in candidates})
        policies = {
            int(p["issuing_entity"]): p
            for p in (
                await InvoicingPolicy.select().where(
                    among(InvoicingPolicy.issuing_entity, entity_ids)
                )
                if entity_ids
                else []
            )
        }
        account_ids = sorted({int(r["billing_account"]) for r in candidates})
        flagged = {
            int(a["billing_account"])
            for a in (
                await AccountApprovalRule.select(AccountApprovalRule.billing_account).where(
                    among(AccountApprovalRule.billing_account, account_ids)
                    & AccountApprovalRule.requires_approval.eq(True)
                )
                if account_ids
                else []
            )
        }
        issued_of = {int(r["id"]): issue_date or r["issue_date"] or today for r in candidates}
        locked = await locked_periods(
            {(int(r["issuing_entity"]), period_of(issued_of[int(r["id"])])) for r in candidates}
        )
        rates: dict[tuple[str, str, date], RateQuote | None] = {}

        awaiting_approval: list[int] = []
        passing: list[dict[str, Any]] = []
        for r in candidates:
            invoice_id = int(r["id"])
            issued = issued_of[invoice_id]
            if r["tax_status"] == "pending":
                reason = tax_failed.get(invoice_id, "tax has not been computed")
                report.hold(invoice_id, TAX_MISSING, reason)
                continue
            functional = r["entity_functional"]
            key = (r["currency"], functional, issued)
            if key not in rates:
                rates[key] = await find_rate(r["currency"], functional, issued)
            quote = rates[key]
            if quote is None:
                report.hold(
                    invoice_id,
                    FX_MISSING,
                    f"no {r['currency']}→{functional} exchange rate dated within "
                    f"{MAX_RATE_AGE_DAYS} days before {issued.isoformat()}: enter one or "
                    "import the ECB file",
                )
                continue
            policy = policies.get(int(r["issuing_entity"]))
            needs = approval_required(
                total_functional_minor=convert_minor(
                    int(r["total_minor"]), r["currency"], functional, quote.rate
                ),
                threshold_minor=policy["approval_threshold_minor"] if policy else None,
                account_flag=int(r["billing_account"]) in flagged,
            )
            if needs and r["approval_status"] != "approved":
                report.hold(invoice_id, APPROVAL_NEEDED, f"approval needed: {needs}")
                if r["approval_status"] != "pending":
                    awaiting_approval.append(invoice_id)
                continue
            if r["approval_status"] == "approved" and r["approved_by"] == r["created_by"]:
                report.hold(
                    invoice_id, APPROVER_IS_CREATOR, "approved by its creator: needs someone else"
                )
                continue
            if (int(r["issuing_entity"]), period_of(issued)) in locked:
                report.hold(
                    invoice_id,
                    PERIOD_LOCKED,
                    f"the period {period_of(issued)} is locked for issuing entity "
                    f"{r['entity_code']}",
                )
                continue
            r["_issued"], r["_quote"] = issued, quote
            passing.append(r)

        # Revenue accounts must exist in the chart before anything is numbered.
        computed = {t.invoice_id: list(t.lines) for t in applied}
        lines_by = await _lines_of([int(r["id"]) for r in passing if int(r["id"]) not in computed])
        lines_by.update(computed)
        ok: list[dict[str, Any]] = []
        for r in passing:
            bad = {
                line["revenue_account"]
                for line in lines_by.get(int(r["id"]), [])
                if line["revenue_account"] not in REVENUE_ACCOUNTS
            }
            if bad:
                report.hold(
                    int(r["id"]), BAD_LINE, f"unknown revenue account(s): {', '.join(sorted(bad))}"
                )
            else:
                ok.append(r)

        groups: dict[tuple[int, str, str, int], list[int]] = {}
        for r in ok:
            doc = DOCUMENT_CODES.get(r["document_type"], "INV")
            key = (int(r["issuing_entity"]), r["entity_country"], doc, r["_issued"].year)
            groups.setdefault(key, []).append(int(r["id"]))
        numbers = await take_numbers(
            groups,
            {int(r["issuing_entity"]): r["entity_code"] for r in ok},
            {e: p["number_format"] for e, p in policies.items()},
        )

        now = datetime.now(UTC)
        # Drafts whose tax was just computed but that stay drafts (held).
        await update_rows(
            Invoice,
            _TAX_COLUMNS,
            [_tax_values(rows[t.invoice_id]) for t in applied if t.invoice_id in report.held],
        )
        updates = []
        for r in ok:
            invoice_id = int(r["id"])
            quote: RateQuote = r["_quote"]
            updates.append(
                {
                    "id": invoice_id,
                    "number": numbers[invoice_id],
                    "status": "open" if r["total_minor"] > 0 else "paid",
                    "issue_date": r["_issued"],
                    "due_date": due_date(r["_issued"], int(r["terms"])),
                    "finalized_at": now,
                    "functional_currency": r["entity_functional"],
                    "fx_rate": quote.rate,
                    "fx_source": quote.source[:32],
                    "fx_date": quote.rate_date,
                    **_tax_values(r),
                }
            )
            report.finalized[invoice_id] = numbers[invoice_id]
            events.append(
                AuditRecord(
                    actor,
                    "invoice.finalized",
                    "invoice",
                    invoice_id,
                    data={
                        "number": numbers[invoice_id],
                        "total": int(r["total_minor"]),
                        "tax_status": r["tax_status"],
                        "tax": int(r["tax_minor"]),
                        "fx_rate": str(quote.rate),
                        "fx_source": quote.source,
                    },
                )
            )
        await update_rows(
            Invoice,
            {
                "id": "bigint",
                "number": "text",
                "status": "text",
                "issue_date": "date",
                "due_date": "date",
                "finalized_at": "timestamptz",
                "functional_currency": "text",
                "fx_rate": "numeric",
                "fx_source": "text",
                "fx_date": "date",
                **_TAX_COLUMNS,
            },
            updates,
        )
        await update_rows(
            Invoice,
            {"id": "bigint", "approval_status": "text"},
            [{"id": i, "approval_status": "pending"} for i in awaiting_approval],
        )
        await post_invoice_entries(
            [
                {
                    "id": int(r["id"]),
                    "issuing_entity": int(r["issuing_entity"]),
                    "billing_account": int(r["billing_account"]),
                    "currency": r["currency"],
                    "total_minor": int(r["total_minor"]),
                    "effective": r["_issued"],
                    "description": f"Invoice {numbers[int(r['id'])]}",
                }
                for r in ok
            ],
            "finalized",
            lines_by=lines_by,
        )
        for invoice_id in awaiting_approval:
            events.append(
                AuditRecord(
                    actor,
                    "invoice.approval_requested",
                    "invoice",
                    invoice_id,
                    reason_code=APPROVAL_NEEDED,
                    data={"reason": report.held[invoice_id]},
                )
            )
        for t in applied:
            if t.invoice_id in report.finalized:
                continue  # its finalized event carries the tax
            events.append(
                AuditRecord(
                    actor,
                    "invoice.tax_computed",
                    "invoice",
                    t.invoice_id,
                    data={
                        "status": t.result.status,
                        "tax": t.result.tax_minor,
                        "provider": t.result.provider,
                    },
                )
            )
        await record_many(events)
    return report
