"""Recording money received and applying it to invoices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import NotFound, ValidationFailed
from core.fx.realized import Application, post_realized_fx
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.payments.allocation import AllocationRequest, check_allocations
from core.payments.tables import Allocation, Payment


async def record_payment(
    *,
    billing_account_id: int,
    amount_minor: int,
    currency_code: str,
    method: str,
    reference: str,
    allocations: Sequence[AllocationRequest],
    actor: Actor,
    received_at: datetime | None = None,
    cash_account: str = acct.CASH,
    attempt_id: int | None = None,
    stripe_payment_intent: str = "",
) -> int:
    """Record a payment, apply it to open invoices of the same account and currency,
    keep any remainder as unapplied cash, and post Cash / AR / Unapplied cash.

    Money collected through Stripe passes ``cash_account=STRIPE_BALANCE`` (it sits in
    the Stripe balance until paid out) and the ``attempt_id`` / ``stripe_payment_intent``
    it came from (unique per attempt and billing account)."""
    received_at = received_at or datetime.now(UTC)
    async with transaction():
        account = (
            await BillingAccount.select(BillingAccount.currency, BillingAccount.issuing_entity)
            .where(BillingAccount.id == billing_account_id)
            .first()
        )
        if account is None:
            raise NotFound("billing account")
        if account["currency"] != currency_code:
            raise ValidationFailed({"currency": "Payment currency must match the account."})
        ids = [a.invoice_id for a in allocations]
        open_rows = await for_update(
            Invoice.select(Invoice.id, Invoice.balance_minor, Invoice.paid_minor).where(
                Invoice.id.is_in(ids or [-1])
                & (Invoice.billing_account == billing_account_id)
                & (Invoice.status == "open")
                & (Invoice.currency == currency_code)
            )
        )
        balances = {r["id"]: r["balance_minor"] for r in open_rows}
        unapplied = check_allocations(amount_minor, allocations, balances)
        now = datetime.now(UTC)
        [row] = await Payment.insert(
            Payment(
                billing_account=billing_account_id,
                currency=currency_code,
                amount_minor=amount_minor,
                unapplied_minor=unapplied,
                method=method,
                reference=reference,
                status="succeeded",
                received_at=received_at,
                created_at=now,
                attempt=attempt_id,
                stripe_payment_intent=stripe_payment_intent,
            )
        )
        payment_id = int(row["id"])
        paid_by_id = {r["id"]: r["paid_minor"] for r in open_rows}
        for alloc in allocations:
            balance = balances[alloc.invoice_id] - alloc.amount_minor
            await Invoice.update(
                {
                    Invoice.paid_minor: paid_by_id[alloc.invoice_id] + alloc.amount_minor,
                    Invoice.balance_minor: balance,
                    Invoice.status: "paid" if balance == 0 else "open",
                    Invoice.closed_at: now if balance == 0 else None,
                }
            ).where(Invoice.id == alloc.invoice_id)
        allocation_rows: list[dict[str, object]] = []
        if allocations:
            allocation_rows = await Allocation.insert(
                *[
                    Allocation(
                        payment=payment_id,
                        invoice=a.invoice_id,
                        amount_minor=a.amount_minor,
                        created_at=now,
                    )
                    for a in allocations
                ]
            )
        await post(
            EntrySpec(
                issuing_entity_id=account["issuing_entity"],
                currency=currency_code,
                effective_date=received_at.date(),
                source_type="payment",
                source_id=payment_id,
                event="received",
                description=f"Payment {reference}".strip(),
                lines=[
                    debit(cash_account, amount_minor),
                    credit(
                        acct.AR, amount_minor - unapplied, billing_account_id=billing_account_id
                    ),
                    credit(acct.UNAPPLIED_CASH, unapplied, billing_account_id=billing_account_id),
                ],
            )
        )
        # Realized FX gain/loss of invoices in a currency other than their issuer's
        # functional currency (a separate entry in the functional currency).
        await post_realized_fx(
            [
                Application(int(row["id"]), a.invoice_id, a.amount_minor, received_at.date())
                for row, a in zip(allocation_rows, allocations, strict=True)
            ],
            actor,
        )
        await record(
            AuditRecord(
                actor,
                "payment.recorded",
                "payment",
                payment_id,
                data={
                    "amount": amount_minor,
                    "unapplied": unapplied,
                    "allocations": {str(a.invoice_id): a.amount_minor for a in allocations},
                },
            )
        )
    return payment_id
