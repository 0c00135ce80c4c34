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
from core.invoicing.finalization import (
    NOT_FOUND,
    actor_ref,
    finalize_many,
    post_invoice_entries,
)
from core.invoicing.rules import (
    LineInput,
    NumberFormatError,
    price_line,
    totals,
    validate_number_format,
)
from core.invoicing.tables import AccountApprovalRule, Invoice, InvoiceLine, InvoicingPolicy
from core.ledger import accounts as acct
from core.ledger.periods import ensure_open
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit

TAX_STATUSES = ("pending", "calculated", "estimated", "exempt")


async def create_draft(
    billing_account_id: int,
    lines: Sequence[LineInput],
    actor: Actor,
    memo: str = "",
    tax_status: str = "calculated",
) -> int:
    """A draft with the given lines. By default the lines' tax rates are the computed
    tax (``tax_status="calculated"``); pass ``tax_status="pending"`` to have the tax
    service compute it (at the latest when the draft is finalized)."""
    if not lines:
        raise ValidationFailed({"lines": "An invoice needs at least one line."})
    if tax_status not in TAX_STATUSES:
        raise ValidationFailed({"tax_status": f"Unknown tax status {tax_status!r}."})
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
                created_by=actor_ref(actor),
                tax_status=tax_status,
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
                    kind=p.line.kind,
                    revenue_account=p.line.revenue_account,
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
    """AR against revenue (per revenue account) and tax payable (per tax code), or its
    exact reversal; refused in a locked period."""
    await ensure_open(inv["issuing_entity"], effective)
    await post_invoice_entries(
        [
            {
                "id": inv["id"],
                "issuing_entity": inv["issuing_entity"],
                "billing_account": inv["billing_account"],
                "currency": inv["currency"],
                "total_minor": inv["total_minor"],
                "effective": effective,
                "description": description,
            }
        ],
        event,
        reverse=reverse,
    )


async def finalize(invoice_id: int, actor: Actor, issue_date: date | None = None) -> str:
    """Finalize one draft (``finalize_many`` of one): number it, freeze its exchange
    rate, open it and post AR against revenue and tax. A held draft raises ``NotFound``
    or ``Conflict`` with the reason."""
    report = await finalize_many([invoice_id], actor, issue_date)
    if invoice_id in report.held:
        if report.held_codes[invoice_id] == NOT_FOUND:
            raise NotFound("invoice")
        raise Conflict(report.held[invoice_id])
    return report.finalized[invoice_id]


async def approve_draft(invoice_id: int, actor: Actor, note: str = "") -> None:
    """Staff approval of a draft; whoever created the draft cannot approve it."""
    async with transaction():
        inv = await _locked(invoice_id)
        if inv["status"] != "draft":
            raise Conflict(f"only a draft can be approved; this invoice is {inv['status']}")
        who = actor_ref(actor)
        if inv["created_by"] and inv["created_by"] == who:
            raise Conflict("the person who created this draft cannot approve it")
        if inv["approval_status"] == "approved":
            raise Conflict(f"this draft is already approved by {inv['approved_by']}")
        await Invoice.update({Invoice.approval_status: "approved", Invoice.approved_by: who}).where(
            Invoice.id == invoice_id
        )
        await record(
            AuditRecord(
                actor,
                "invoice.approved",
                "invoice",
                invoice_id,
                data={"total": inv["total_minor"], "note": note[:300]},
            )
        )


async def set_invoicing_policy(
    issuing_entity_id: int,
    approval_threshold_minor: int | None,
    number_format: str,
    actor: Actor,
) -> None:
    """Approval threshold (functional-currency minor units; None = no threshold) and the
    number format used by the entity's NEW series (existing series keep theirs)."""
    errors: dict[str, str] = {}
    if approval_threshold_minor is not None and approval_threshold_minor < 0:
        errors["approval_threshold"] = "Enter zero or a positive amount, or leave it empty."
    fmt = (number_format or "").strip()
    if fmt:
        try:
            validate_number_format(fmt)
        except NumberFormatError as exc:
            errors["number_format"] = f"{str(exc).capitalize()}."
    if errors:
        raise ValidationFailed(errors)
    if not await IssuingEntity.exists().where(IssuingEntity.id == issuing_entity_id):
        raise NotFound("issuing entity")
    async with transaction():
        now = datetime.now(UTC)
        await InvoicingPolicy.insert(
            InvoicingPolicy(issuing_entity=issuing_entity_id, updated_at=now)
        ).on_conflict(action="DO NOTHING")
        await InvoicingPolicy.update(
            {
                InvoicingPolicy.approval_threshold_minor: approval_threshold_minor,
                InvoicingPolicy.number_format: fmt,
                InvoicingPolicy.updated_by: actor_ref(actor),
                InvoicingPolicy.updated_at: now,
            }
        ).where(InvoicingPolicy.issuing_entity == issuing_entity_id)
        await record(
            AuditRecord(
                actor,
                "invoicing.policy_set",
                "issuing_entity",
                issuing_entity_id,
                data={"approval_threshold_minor": approval_threshold_minor, "number_format": fmt},
            )
        )


async def set_account_approval(
    billing_account_id: int, requires_approval: bool, reason: str, actor: Actor
) -> None:
    """Flag (or unflag) a billing account whose invoices always need approval."""
    if not await BillingAccount.exists().where(BillingAccount.id == billing_account_id):
        raise NotFound("billing account")
    async with transaction():
        now = datetime.now(UTC)
        await AccountApprovalRule.insert(
            AccountApprovalRule(billing_account=billing_account_id, updated_at=now)
        ).on_conflict(action="DO NOTHING")
        await AccountApprovalRule.update(
            {
                AccountApprovalRule.requires_approval: requires_approval,
                AccountApprovalRule.reason: (reason or "")[:500],
                AccountApprovalRule.updated_by: actor_ref(actor),
                AccountApprovalRule.updated_at: now,
            }
        ).where(AccountApprovalRule.billing_account == billing_account_id)
        await record(
            AuditRecord(
                actor,
                "invoicing.account_approval_set",
                "billing_account",
                billing_account_id,
                data={"requires_approval": requires_approval, "reason": reason[:300]},
            )
        )


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
