"""Adjusted payments: an early-payment discount earned under the account's terms, or a
short payment staff accept as settlement, closes an invoice's remaining balance.

The difference is split into net and tax in proportion to the invoice's subtotal and
its tax per tax code (``core.cash.rules.split_difference``) and posted: sales discounts
(net, debit) and tax payable (per tax code, debit) against AR (credit). The credit line
is an ``Adjustment`` row (with ``AdjustmentTax`` per code) shown on the invoice, to the
customer and to staff. Nothing is dropped: net + tax equal the difference exactly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.cash.access import APPROVERS, BILLING_OPS, FINANCE_ADMIN, OPERATORS, actor_ref, require
from core.cash.rules import early_payment_discount, split_difference, within_write_off_rule
from core.cash.tables import Adjustment, AdjustmentTax, DiscountTerms, WriteOff
from core.cash.writeoffs import limits_for, lock_invoice
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.security import NotPermitted
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice, InvoiceLine
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.ledger.tables import JournalLine
from core.payments.tables import Allocation

KINDS = {
    "early_payment_discount": "Early-payment discount",
    "short_payment": "Accepted short payment",
}
REASON_MAX = 500
MAX_ID = 2**31 - 1


# ---------------------------------------------------------------------- discount terms


def parse_terms(percent_raw: str, days_raw: str) -> tuple[Decimal, int]:
    errors: dict[str, str] = {}
    percent = Decimal(0)
    try:
        percent = Decimal(percent_raw.strip().rstrip("%").strip())
        if not percent.is_finite() or not Decimal(0) <= percent <= Decimal(50):
            raise InvalidOperation
        if percent.as_tuple().exponent < -4:  # type: ignore[operator]
            errors["percent"] = "Use at most four decimals."
    except InvalidOperation:
        errors["percent"] = "Enter a percentage between 0 and 50, e.g. 2."
    days = 0
    raw = days_raw.strip()
    if not raw.isdigit() or not 0 <= int(raw) <= 365:
        errors["days"] = "Enter a whole number of days between 0 and 365."
    else:
        days = int(raw)
    if errors:
        raise ValidationFailed(errors)
    return percent, days


async def set_terms(billing_account_id: int, percent: Decimal, days: int, actor: Actor) -> None:
    """Set (or, with 0 %, remove the effect of) an account's early-payment discount."""
    await require(actor, {FINANCE_ADMIN, BILLING_OPS})
    if not 0 < billing_account_id <= MAX_ID:
        raise NotFound("billing account")
    async with transaction():
        account = await for_update(
            BillingAccount.select(BillingAccount.id).where(BillingAccount.id == billing_account_id)
        ).first()
        if account is None:
            raise NotFound("billing account")
        now = datetime.now(UTC)
        existing = (
            await DiscountTerms.select(DiscountTerms.id)
            .where(DiscountTerms.billing_account == billing_account_id)
            .first()
        )
        if existing is None:
            await DiscountTerms.insert(
                DiscountTerms(
                    billing_account=billing_account_id,
                    percent=percent,
                    days=days,
                    updated_by=actor_ref(actor),
                    updated_at=now,
                )
            )
        else:
            await DiscountTerms.update(
                {
                    DiscountTerms.percent: percent,
                    DiscountTerms.days: days,
                    DiscountTerms.updated_by: actor_ref(actor),
                    DiscountTerms.updated_at: now,
                }
            ).where(DiscountTerms.id == existing["id"])
        await record(
            AuditRecord(
                actor,
                "discount_terms.saved",
                "billing_account",
                billing_account_id,
                data={"percent": str(percent), "days": days},
            )
        )


async def terms_for(billing_account_id: int) -> dict[str, Any] | None:
    return (
        await DiscountTerms.select()
        .where(DiscountTerms.billing_account == billing_account_id)
        .first()
    )


async def all_terms() -> list[dict[str, Any]]:
    return await DiscountTerms.select(
        DiscountTerms.all_columns(),
        DiscountTerms.billing_account.code.as_alias("account_code"),
        DiscountTerms.billing_account.name.as_alias("account_name"),
    ).order_by(DiscountTerms.billing_account.code)


# --------------------------------------------------------------------------- settlement


async def _last_payment_date(invoice_id: int) -> date | None:
    rows = await Allocation.select(Allocation.payment.received_at.as_alias("received_at")).where(
        Allocation.invoice == invoice_id
    )
    dates = [r["received_at"] for r in rows if r["received_at"] is not None]
    return max(dates).astimezone(UTC).date() if dates else None


async def settle_invoice(invoice_id: int, kind: str, reason: str, actor: Actor) -> int:
    """Close the invoice's remaining balance as an early-payment discount or an accepted
    short payment; returns the adjustment id.

    An early-payment discount needs the account's terms, a payment received on or
    before the discount deadline, and a remaining balance no larger than the discount
    earned. An accepted short payment needs a reason; one larger than the currency's
    write-off rule can be accepted by a finance admin only.
    """
    role = await require(actor, OPERATORS)
    if kind not in KINDS:
        raise ValidationFailed({"kind": "Choose early-payment discount or short payment."})
    reason = reason.strip()
    if len(reason) > REASON_MAX:
        raise ValidationFailed({"reason": f"Keep the reason under {REASON_MAX} characters."})
    if kind == "short_payment" and not reason:
        raise ValidationFailed({"reason": "Say why the short payment is accepted."})
    async with transaction():
        inv = await lock_invoice(invoice_id)
        difference = inv["balance_minor"]
        if inv["status"] != "open" or difference <= 0:
            raise Conflict("This invoice has no open balance to settle.")
        pending = (
            await WriteOff.select(WriteOff.id)
            .where((WriteOff.invoice == invoice_id) & (WriteOff.status == "pending_approval"))
            .first()
        )
        if pending is not None:
            raise Conflict("A write-off of this invoice is waiting for approval: decide it first.")
        if kind == "early_payment_discount":
            terms = await terms_for(inv["billing_account"])
            paid_on = await _last_payment_date(invoice_id)
            if terms is None or terms["percent"] <= 0:
                raise ValidationFailed({"kind": "This account has no early-payment discount."})
            if paid_on is None or inv["issue_date"] is None:
                raise ValidationFailed({"kind": "No payment has been applied to this invoice."})
            earned = early_payment_discount(
                inv["total_minor"],
                inv["currency"],
                terms["percent"],
                inv["issue_date"],
                terms["days"],
                paid_on,
            )
            if earned == 0:
                raise ValidationFailed(
                    {"kind": "The payment came after the discount period: no discount earned."}
                )
            if difference > earned:
                raise ValidationFailed(
                    {
                        "kind": "The open balance is larger than the discount earned; the "
                        "customer still owes the rest."
                    }
                )
            reason = reason or (
                f"{terms['percent'].normalize()} % if paid within {terms['days']} days"
            )
        elif role not in APPROVERS:
            limits = await limits_for(inv["currency"])
            if not within_write_off_rule(difference, inv["total_minor"], limits):
                raise NotPermitted(
                    "A short payment this large can be accepted by a finance admin only."
                )
        tax_rows = await InvoiceLine.select(InvoiceLine.tax_code, InvoiceLine.tax_minor).where(
            InvoiceLine.invoice == invoice_id
        )
        tax_by_code: dict[str, int] = {}
        for t in tax_rows:
            tax_by_code[t["tax_code"]] = tax_by_code.get(t["tax_code"], 0) + t["tax_minor"]
        tax_by_code = {c: v for c, v in tax_by_code.items() if v != 0}
        try:
            split = split_difference(
                difference, inv["currency"], inv["subtotal_minor"], tax_by_code
            )
        except ValueError as exc:
            raise Conflict(str(exc)) from exc
        now = datetime.now(UTC)
        [row] = await Adjustment.insert(
            Adjustment(
                invoice=invoice_id,
                billing_account=inv["billing_account"],
                currency=inv["currency"],
                kind=kind,
                amount_minor=difference,
                net_minor=split.net_minor,
                tax_minor=split.tax_minor,
                reason=reason,
                created_by=actor_ref(actor),
                created_at=now,
            )
        )
        adjustment_id = int(row["id"])
        if split.tax_by_code:
            await AdjustmentTax.insert(
                *[
                    AdjustmentTax(adjustment=adjustment_id, tax_code=c, tax_minor=v)
                    for c, v in split.tax_by_code.items()
                ]
            )
        await Invoice.update(
            {Invoice.balance_minor: 0, Invoice.status: "paid", Invoice.closed_at: now}
        ).where(Invoice.id == invoice_id)
        ba = inv["billing_account"]
        await post(
            EntrySpec(
                issuing_entity_id=inv["issuing_entity"],
                currency=inv["currency"],
                effective_date=now.date(),
                source_type="settlement_adjustment",
                source_id=adjustment_id,
                event="posted",
                description=f"{KINDS[kind]} {inv['number']}",
                lines=[
                    debit(acct.SALES_DISCOUNTS, split.net_minor, billing_account_id=ba),
                    *[debit(acct.TAX_PAYABLE, v, tax_code=c) for c, v in split.tax_by_code.items()],
                    credit(acct.AR, difference, billing_account_id=ba),
                ],
            )
        )
        await record(
            AuditRecord(
                actor,
                "invoice.settled",
                "invoice",
                invoice_id,
                reason_code=kind,
                data={
                    "adjustment": adjustment_id,
                    "amount": difference,
                    "net": split.net_minor,
                    "tax": split.tax_by_code,
                    "reason": reason[:200],
                },
            )
        )
    return adjustment_id


# ------------------------------------------------------------------------------ queries


async def credit_lines(invoice_id: int) -> list[dict[str, Any]]:
    """What reduced an invoice's balance besides payments: settlement adjustments and
    posted write-offs, oldest first (for the invoice page, customer and staff)."""
    lines: list[dict[str, Any]] = []
    for a in await Adjustment.select().where(Adjustment.invoice == invoice_id):
        taxes = await AdjustmentTax.select().where(AdjustmentTax.adjustment == a["id"])
        lines.append(
            {
                "when": a["created_at"],
                "label": KINDS.get(a["kind"], a["kind"]),
                "kind": a["kind"],
                "amount_minor": a["amount_minor"],
                "net_minor": a["net_minor"],
                "tax_minor": a["tax_minor"],
                "taxes": taxes,
            }
        )
    for w in await WriteOff.select().where(
        (WriteOff.invoice == invoice_id) & (WriteOff.status == "written_off")
    ):
        lines.append(
            {
                "when": w["decided_at"] or w["requested_at"],
                "label": "Written off",
                "kind": "write_off",
                "amount_minor": w["amount_minor"],
                "net_minor": None,
                "tax_minor": None,
                "taxes": [],
            }
        )
    # Marked uncollectible by invoicing (core.invoicing.services.mark_uncollectible):
    # no write-off row, but its journal entry says how much was written off.
    for e in await JournalLine.select(
        JournalLine.credit_minor, JournalLine.entry.posted_at.as_alias("posted_at")
    ).where(
        (JournalLine.entry.source_type == "invoice")
        & (JournalLine.entry.source_id == invoice_id)
        & (JournalLine.entry.event == "written_off")
        & (JournalLine.credit_minor > 0)
    ):
        lines.append(
            {
                "when": e["posted_at"],
                "label": "Written off as uncollectible",
                "kind": "uncollectible",
                "amount_minor": e["credit_minor"],
                "net_minor": None,
                "tax_minor": None,
                "taxes": [],
            }
        )
    return sorted(lines, key=lambda x: x["when"])
