"""Applying a payment's unapplied cash to open invoices, and taking an application back.

Each apply or unapply of one allocation is an ``AllocationChange`` row, the ledger
source of its entry (``allocation_change``, change id, ``applied``/``unapplied``), so
any number of applies and unapplies on one payment never collide. Lock order is always
payment, then invoices by id: two actors working on one payment serialize on its row
and can never apply more than its unapplied cash.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.cash.access import OPERATORS, actor_ref, require
from core.cash.tables import AllocationChange
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.fx.realized import Application, post_realized_fx, reverse_realized_fx
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.payments.allocation import AllocationRequest, check_allocations
from core.payments.tables import Allocation, Payment

MAX_ID = 2**31 - 1
REASON_MAX = 500


async def lock_payment(payment_id: int) -> dict[str, Any]:
    if not 0 < payment_id <= MAX_ID:
        raise NotFound("payment")
    row = await for_update(
        Payment.select(
            Payment.all_columns(),
            Payment.billing_account.issuing_entity.as_alias("issuing_entity"),
        ).where(Payment.id == payment_id)
    ).first()
    if row is None:
        raise NotFound("payment")
    return row


async def _post_change(
    payment: dict[str, Any], change_id: int, amount: int, event: str, invoice_number: str
) -> None:
    ba = payment["billing_account"]
    applied = event == "applied"
    ar_side, cash_side = (credit, debit) if applied else (debit, credit)
    await post(
        EntrySpec(
            issuing_entity_id=payment["issuing_entity"],
            currency=payment["currency"],
            effective_date=datetime.now(UTC).date(),
            source_type="allocation_change",
            source_id=change_id,
            event=event,
            description=f"Payment {payment['id']} {event} {invoice_number or ''}".strip(),
            lines=[
                cash_side(acct.UNAPPLIED_CASH, amount, billing_account_id=ba),
                ar_side(acct.AR, amount, billing_account_id=ba),
            ],
        )
    )


async def apply_unapplied(
    payment_id: int, items: Sequence[AllocationRequest], actor: Actor
) -> list[int]:
    """Move part of a payment's unapplied cash onto open invoices of the same billing
    account and currency. Returns the new allocation ids, in the order of ``items``."""
    await require(actor, OPERATORS, system=True)
    if not items:
        raise ValidationFailed({"allocations": "Choose at least one invoice and an amount."})
    async with transaction():
        payment = await lock_payment(payment_id)
        if payment["status"] != "succeeded":
            raise Conflict("Only the cash of a settled payment can be applied.")
        if payment["unapplied_minor"] <= 0:
            raise ValidationFailed({"allocations": "This payment has no unapplied cash left."})
        ids = sorted({i.invoice_id for i in items if 0 < i.invoice_id <= MAX_ID})
        invoices = await for_update(
            Invoice.select(
                Invoice.id,
                Invoice.number,
                Invoice.balance_minor,
                Invoice.paid_minor,
            )
            .where(
                Invoice.id.is_in(ids or [-1])
                & (Invoice.billing_account == payment["billing_account"])
                & (Invoice.currency == payment["currency"])
                & (Invoice.status == "open")
            )
            .order_by(Invoice.id)
        )
        by_id = {r["id"]: r for r in invoices}
        balances = {r["id"]: r["balance_minor"] for r in invoices}
        left = check_allocations(payment["unapplied_minor"], items, balances)
        now = datetime.now(UTC)
        allocation_ids: list[int] = []
        for item in items:
            inv = by_id[item.invoice_id]
            balance = inv["balance_minor"] - item.amount_minor
            await Invoice.update(
                {
                    Invoice.paid_minor: inv["paid_minor"] + item.amount_minor,
                    Invoice.balance_minor: balance,
                    Invoice.status: "paid" if balance == 0 else "open",
                    Invoice.closed_at: now if balance == 0 else None,
                }
            ).where(Invoice.id == item.invoice_id)
            [alloc] = await Allocation.insert(
                Allocation(
                    payment=payment_id,
                    invoice=item.invoice_id,
                    amount_minor=item.amount_minor,
                    created_at=now,
                )
            )
            allocation_id = int(alloc["id"])
            [change] = await AllocationChange.insert(
                AllocationChange(
                    payment=payment_id,
                    invoice=item.invoice_id,
                    allocation_id=allocation_id,
                    kind="apply",
                    amount_minor=item.amount_minor,
                    actor=actor_ref(actor),
                    created_at=now,
                )
            )
            await _post_change(
                payment, int(change["id"]), item.amount_minor, "applied", inv["number"] or ""
            )
            await post_realized_fx(
                [Application(allocation_id, item.invoice_id, item.amount_minor, now.date())],
                actor,
            )
            await record(
                AuditRecord(
                    actor,
                    "payment.applied",
                    "payment",
                    payment_id,
                    data={
                        "invoice": item.invoice_id,
                        "allocation": allocation_id,
                        "amount": item.amount_minor,
                        "unapplied_after": left,
                    },
                )
            )
            allocation_ids.append(allocation_id)
        await Payment.update({Payment.unapplied_minor: left}).where(Payment.id == payment_id)
    return allocation_ids


async def unapply(allocation_id: int, actor: Actor, reason: str) -> None:
    """Take an allocation back: the invoice's balance reopens and the amount returns to
    the payment's unapplied cash (AR debit, unapplied cash credit)."""
    await require(actor, OPERATORS, system=True)
    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": "Give a reason for taking the payment back."})
    if len(reason) > REASON_MAX:
        raise ValidationFailed({"reason": f"Keep the reason under {REASON_MAX} characters."})
    if not 0 < allocation_id <= MAX_ID:
        raise NotFound("allocation")
    async with transaction():
        head = (
            await Allocation.select(Allocation.payment)
            .where(Allocation.id == allocation_id)
            .first()
        )
        if head is None:
            raise NotFound("allocation")
        payment = await lock_payment(head["payment"])
        alloc = await for_update(Allocation.select().where(Allocation.id == allocation_id)).first()
        if alloc is None:  # unapplied by someone else meanwhile
            raise NotFound("allocation")
        inv = await for_update(
            Invoice.select(
                Invoice.id,
                Invoice.number,
                Invoice.status,
                Invoice.paid_minor,
                Invoice.balance_minor,
            ).where(Invoice.id == alloc["invoice"])
        ).first()
        assert inv is not None
        if inv["status"] not in ("open", "paid"):
            raise Conflict(f"The invoice is {inv['status']}: its payments cannot be taken back.")
        amount = alloc["amount_minor"]
        now = datetime.now(UTC)
        await Allocation.delete().where(Allocation.id == allocation_id)
        await Invoice.update(
            {
                Invoice.paid_minor: inv["paid_minor"] - amount,
                Invoice.balance_minor: inv["balance_minor"] + amount,
                Invoice.status: "open",
                Invoice.closed_at: None,
            }
        ).where(Invoice.id == inv["id"])
        await Payment.update({Payment.unapplied_minor: payment["unapplied_minor"] + amount}).where(
            Payment.id == payment["id"]
        )
        [change] = await AllocationChange.insert(
            AllocationChange(
                payment=payment["id"],
                invoice=inv["id"],
                allocation_id=allocation_id,
                kind="unapply",
                amount_minor=amount,
                reason=reason,
                actor=actor_ref(actor),
                created_at=now,
            )
        )
        await _post_change(payment, int(change["id"]), amount, "unapplied", inv["number"] or "")
        await reverse_realized_fx(allocation_id, "allocation_change", int(change["id"]), now.date())
        await record(
            AuditRecord(
                actor,
                "payment.unapplied",
                "payment",
                payment["id"],
                reason_code="unapply",
                data={
                    "invoice": inv["id"],
                    "allocation": allocation_id,
                    "amount": amount,
                    "reason": reason[:200],
                },
            )
        )
        await record(
            AuditRecord(
                actor,
                "invoice.reopened",
                "invoice",
                inv["id"],
                data={"allocation": allocation_id, "amount": amount},
            )
        )


# ------------------------------------------------------------------------------ queries


async def payments_with_unapplied(query: str = "", limit: int = 200) -> list[dict[str, Any]]:
    """Payments holding unapplied cash, with their billing account, oldest first."""
    where = Payment.unapplied_minor > 0
    q = query.strip()[:64]
    if q:
        like = f"%{q.replace('%', '').replace('_', '')}%"
        where = where & (
            Payment.billing_account.code.ilike(like)
            | Payment.billing_account.name.ilike(like)
            | Payment.reference.ilike(like)
        )
    return (
        await Payment.select(
            Payment.all_columns(),
            Payment.billing_account.code.as_alias("account_code"),
            Payment.billing_account.name.as_alias("account_name"),
        )
        .where(where)
        .order_by(Payment.billing_account.code)
        .order_by(Payment.received_at)
        .limit(limit)
    )


async def payment_detail(payment_id: int) -> dict[str, Any]:
    if not 0 < payment_id <= MAX_ID:
        raise NotFound("payment")
    row = (
        await Payment.select(
            Payment.all_columns(),
            Payment.billing_account.code.as_alias("account_code"),
            Payment.billing_account.name.as_alias("account_name"),
        )
        .where(Payment.id == payment_id)
        .first()
    )
    if row is None:
        raise NotFound("payment")
    row["allocations"] = (
        await Allocation.select(
            Allocation.all_columns(),
            Allocation.invoice.number.as_alias("invoice_number"),
            Allocation.invoice.status.as_alias("invoice_status"),
        )
        .where(Allocation.payment == payment_id)
        .order_by(Allocation.id)
    )
    row["open_invoices"] = (
        await Invoice.select(
            Invoice.id, Invoice.number, Invoice.due_date, Invoice.total_minor, Invoice.balance_minor
        )
        .where(
            (Invoice.billing_account == row["billing_account"])
            & (Invoice.currency == row["currency"])
            & (Invoice.status == "open")
        )
        .order_by(Invoice.due_date)
        .order_by(Invoice.id)
        .limit(100)
    )
    row["changes"] = (
        await AllocationChange.select(
            AllocationChange.all_columns(),
            AllocationChange.invoice.number.as_alias("invoice_number"),
        )
        .where(AllocationChange.payment == payment_id)
        .order_by(AllocationChange.id, ascending=False)
    )
    account = (
        await BillingAccount.select(BillingAccount.name)
        .where(BillingAccount.id == row["billing_account"])
        .first()
    )
    row["account_display"] = account["name"] if account else ""
    return row
