"""Invoice lifecycle: draft → open (finalize) → paid | void | uncollectible.

Each function is one transaction: it locks the invoice row, checks the transition,
writes, posts the balanced journal entry and appends the audit event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import BillingAccount, IssuingEntity
from core.invoicing.numbering import next_number
from core.invoicing.rules import LineInput, due_date, price_line, totals
from core.invoicing.tables import Invoice, InvoiceLine
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit


async def create_draft(
    billing_account_id: int, lines: Sequence[LineInput], actor: Actor, memo: str = ""
) -> int:
    if not lines:
        raise ValidationFailed({"lines": "An invoice needs at least one line."})
    account = (
        await BillingAccount.select(BillingAccount.currency, BillingAccount.issuing_entity)
        .where(BillingAccount.id == billing_account_id)
        .first()
    )
    if account is None:
        raise NotFound("billing account")
    priced = [price_line(line, account["currency"]) for line in lines]
    subtotal, tax, total = totals(priced)
    async with transaction():
        [row] = await Invoice.insert(
            Invoice(
                billing_account=billing_account_id,
                issuing_entity=account["issuing_entity"],
                status="draft",
                currency=account["currency"],
                subtotal_minor=subtotal,
                tax_minor=tax,
                total_minor=total,
                balance_minor=total,
                memo=memo,
                created_at=datetime.now(UTC),
            )
        )
        invoice_id = int(row["id"])
        await InvoiceLine.insert(
            *[
                InvoiceLine(
                    invoice=invoice_id,
                    position=i,
                    description=p.line.description,
                    quantity=p.line.quantity,
                    unit_price=p.line.unit_price,
                    amount_minor=p.amount_minor,
                    tax_rate=p.line.tax_rate,
                    tax_minor=p.tax_minor,
                    tax_code=p.line.tax_code,
                )
                for i, p in enumerate(priced, start=1)
            ]
        )
        await record(
            AuditRecord(actor, "invoice.drafted", "invoice", invoice_id, data={"total": total})
        )
    return invoice_id


async def _locked(invoice_id: int) -> dict[str, Any]:
    row = await for_update(
        Invoice.select(
            Invoice.all_columns(),
            Invoice.billing_account.payment_terms_days.as_alias("terms"),
            Invoice.issuing_entity.code.as_alias("entity_code"),
            Invoice.issuing_entity.country.as_alias("entity_country"),
        ).where(Invoice.id == invoice_id)
    ).first()
    if row is None:
        raise NotFound("invoice")
    return row


async def _post_invoice_entry(
    inv: dict[str, Any], event: str, description: str, effective: date, reverse: bool = False
) -> None:
    """AR against revenue and tax payable (one line per tax code), or its exact reversal."""
    tax_lines = await InvoiceLine.select(InvoiceLine.tax_code, InvoiceLine.tax_minor).where(
        InvoiceLine.invoice == inv["id"]
    )
    ar_side, other_side = (credit, debit) if reverse else (debit, credit)
    ba = inv["billing_account"]
    await post(
        EntrySpec(
            issuing_entity_id=inv["issuing_entity"],
            currency=inv["currency"],
            effective_date=effective,
            source_type="invoice",
            source_id=inv["id"],
            event=event,
            description=description,
            lines=[
                ar_side(acct.AR, inv["total_minor"], billing_account_id=ba),
                other_side(acct.REVENUE, inv["subtotal_minor"], billing_account_id=ba),
                *[
                    other_side(acct.TAX_PAYABLE, t["tax_minor"], tax_code=t["tax_code"])
                    for t in tax_lines
                ],
            ],
        )
    )


async def finalize(invoice_id: int, actor: Actor, issue_date: date | None = None) -> str:
    """Number the invoice, set its dates, open it and post AR against revenue and tax."""
    async with transaction():
        inv = await _locked(invoice_id)
        if inv["status"] != "draft":
            raise Conflict(f"only a draft can be finalized; this invoice is {inv['status']}")
        issued = issue_date or datetime.now(UTC).date()
        number = await next_number(
            issuing_entity_id=inv["issuing_entity"],
            entity_code=inv["entity_code"],
            jurisdiction=inv["entity_country"],
            document_type="INV",
            year=issued.year,
        )
        status = "open" if inv["total_minor"] > 0 else "paid"
        await Invoice.update(
            {
                Invoice.number: number,
                Invoice.status: status,
                Invoice.issue_date: issued,
                Invoice.due_date: due_date(issued, inv["terms"]),
                Invoice.finalized_at: datetime.now(UTC),
            }
        ).where(Invoice.id == invoice_id)
        await _post_invoice_entry(inv, "finalized", f"Invoice {number}", issued)
        await record(
            AuditRecord(actor, "invoice.finalized", "invoice", invoice_id, data={"number": number})
        )
    return number


async def void(invoice_id: int, actor: Actor, reason: str) -> None:
    """Void an open invoice with nothing applied to it; it keeps its number."""
    async with transaction():
        inv = await _locked(invoice_id)
        if inv["status"] != "open" or inv["paid_minor"] != 0:
            raise Conflict("only an open invoice with no payments applied can be voided")
        await Invoice.update(
            {Invoice.status: "void", Invoice.balance_minor: 0, Invoice.closed_at: datetime.now(UTC)}
        ).where(Invoice.id == invoice_id)
        await _post_invoice_entry(
            inv, "voided", f"Void {inv['number']}", datetime.now(UTC).date(), reverse=True
        )
        await record(
            AuditRecord(actor, "invoice.voided", "invoice", invoice_id, reason_code=reason)
        )


async def mark_uncollectible(invoice_id: int, actor: Actor, reason: str) -> None:
    """Write the remaining balance off to bad debt."""
    async with transaction():
        inv = await _locked(invoice_id)
        if inv["status"] != "open":
            raise Conflict("only an open invoice can be marked uncollectible")
        balance = inv["balance_minor"]
        await Invoice.update(
            {
                Invoice.status: "uncollectible",
                Invoice.balance_minor: 0,
                Invoice.closed_at: datetime.now(UTC),
            }
        ).where(Invoice.id == invoice_id)
        ba = inv["billing_account"]
        await post(
            EntrySpec(
                issuing_entity_id=inv["issuing_entity"],
                currency=inv["currency"],
                effective_date=datetime.now(UTC).date(),
                source_type="invoice",
                source_id=invoice_id,
                event="written_off",
                description=f"Uncollectible {inv['number']}",
                lines=[
                    debit(acct.WRITE_OFF, balance, billing_account_id=ba),
                    credit(acct.AR, balance, billing_account_id=ba),
                ],
            )
        )
        await record(
            AuditRecord(
                actor,
                "invoice.uncollectible",
                "invoice",
                invoice_id,
                reason_code=reason,
                data={"written_off": balance},
            )
        )


async def issuing_entity_ids() -> dict[str, int]:
    rows = await IssuingEntity.select(IssuingEntity.id, IssuingEntity.code)
    return {r["code"]: r["id"] for r in rows}
