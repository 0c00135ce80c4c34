"""Refunds of unapplied cash, with approval.

Billing ops (or a finance admin) request a refund of part or all of a payment's
unapplied cash; a finance admin other than the requester approves or rejects it.
Approval, in one transaction: the payment's unapplied cash goes down, the refund is
``processing`` and posts unapplied cash (debit) against cash (bank refunds) or the
Stripe balance (payments that came through Stripe). A Stripe refund is then created
outside the transaction with the idempotency key ``refund-{refund_id}`` (retrying is
harmless: Stripe returns the same refund); a bank refund is marked paid out by staff
once the transfer has left. Nothing is reserved while a request waits: approval
re-checks that the unapplied cash still covers it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from core.audit.log import Actor, AuditRecord, record
from core.cash.access import APPROVERS, REFUND_REQUESTERS, actor_ref, require
from core.cash.allocations import lock_payment
from core.cash.tables import Refund
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.payments.tables import Payment

log = structlog.get_logger("ledgerline.cash.refunds")

MAX_ID = 2**31 - 1
REASON_MAX = 500


def refund_key(refund_id: int) -> str:
    return f"refund-{refund_id}"


def _channel(payment: dict[str, Any]) -> str:
    return "stripe" if payment.get("stripe_payment_intent") else "bank"


async def request_refund(payment_id: int, amount_minor: int, reason: str, actor: Actor) -> int:
    await require(actor, REFUND_REQUESTERS)
    reason = reason.strip()
    errors: dict[str, str] = {}
    if amount_minor <= 0:
        errors["amount"] = "Enter an amount of more than zero."
    if not reason:
        errors["reason"] = "Give a reason for the refund."
    elif len(reason) > REASON_MAX:
        errors["reason"] = f"Keep the reason under {REASON_MAX} characters."
    if errors:
        raise ValidationFailed(errors)
    async with transaction():
        payment = await lock_payment(payment_id)
        pending = await Refund.select(Refund.amount_minor).where(
            (Refund.payment == payment_id) & (Refund.status == "pending_approval")
        )
        available = payment["unapplied_minor"] - sum(r["amount_minor"] for r in pending)
        if amount_minor > available:
            raise ValidationFailed(
                {
                    "amount": "The refund exceeds the payment's unapplied cash not already "
                    "requested for refund."
                }
            )
        [row] = await Refund.insert(
            Refund(
                payment=payment_id,
                billing_account=payment["billing_account"],
                currency=payment["currency"],
                amount_minor=amount_minor,
                channel=_channel(payment),
                status="pending_approval",
                reason=reason,
                requested_by=actor_ref(actor),
                requested_at=datetime.now(UTC),
            )
        )
        refund_id = int(row["id"])
        await record(
            AuditRecord(
                actor,
                "refund.requested",
                "refund",
                refund_id,
                data={"payment": payment_id, "amount": amount_minor, "reason": reason[:200]},
            )
        )
    return refund_id


async def _lock_request(refund_id: int, actor: Actor) -> tuple[dict[str, Any], dict[str, Any]]:
    await require(actor, APPROVERS)
    if not 0 < refund_id <= MAX_ID:
        raise NotFound("refund")
    head = await Refund.select(Refund.payment).where(Refund.id == refund_id).first()
    if head is None:
        raise NotFound("refund")
    payment = await lock_payment(head["payment"])
    refund = await for_update(Refund.select().where(Refund.id == refund_id)).first()
    assert refund is not None
    if refund["status"] != "pending_approval":
        raise Conflict("This refund request was already decided.")
    if refund["requested_by"] == actor_ref(actor):
        raise Conflict("You requested this refund: another finance admin must decide it.")
    return payment, refund


async def approve_refund(refund_id: int, actor: Actor, note: str = "") -> str:
    """Approve and post; returns the channel (``stripe`` or ``bank``). Call
    ``submit_stripe_refund`` after this returns for a Stripe refund."""
    async with transaction():
        payment, refund = await _lock_request(refund_id, actor)
        amount = refund["amount_minor"]
        if amount > payment["unapplied_minor"]:
            raise Conflict(
                "The payment's unapplied cash no longer covers this refund "
                "(it was applied meanwhile): reject it."
            )
        now = datetime.now(UTC)
        await Refund.update(
            {
                Refund.status: "processing",
                Refund.decided_by: actor_ref(actor),
                Refund.decided_at: now,
                Refund.decision_note: note.strip()[:REASON_MAX],
            }
        ).where(Refund.id == refund_id)
        await Payment.update({Payment.unapplied_minor: payment["unapplied_minor"] - amount}).where(
            Payment.id == payment["id"]
        )
        ba = payment["billing_account"]
        money_account = acct.STRIPE_BALANCE if refund["channel"] == "stripe" else acct.CASH
        await post(
            EntrySpec(
                issuing_entity_id=payment["issuing_entity"],
                currency=payment["currency"],
                effective_date=now.date(),
                source_type="refund",
                source_id=refund_id,
                event="approved",
                description=f"Refund of unapplied cash, payment {payment['id']}",
                lines=[
                    debit(acct.UNAPPLIED_CASH, amount, billing_account_id=ba),
                    credit(money_account, amount, billing_account_id=ba),
                ],
            )
        )
        await record(
            AuditRecord(
                actor,
                "refund.approved",
                "refund",
                refund_id,
                data={"payment": payment["id"], "amount": amount, "channel": refund["channel"]},
            )
        )
    return str(refund["channel"])


async def reject_refund(refund_id: int, actor: Actor, note: str) -> None:
    note = note.strip()
    if not note:
        raise ValidationFailed({"note": "Say why the refund is rejected."})
    async with transaction():
        await _lock_request(refund_id, actor)
        await Refund.update(
            {
                Refund.status: "rejected",
                Refund.decided_by: actor_ref(actor),
                Refund.decided_at: datetime.now(UTC),
                Refund.decision_note: note[:REASON_MAX],
            }
        ).where(Refund.id == refund_id)
        await record(
            AuditRecord(actor, "refund.rejected", "refund", refund_id, data={"note": note[:200]})
        )


async def mark_paid_out(refund_id: int, actor: Actor) -> None:
    """A bank refund's transfer has left: the refund is complete."""
    await require(actor, APPROVERS)
    async with transaction():
        refund = await for_update(Refund.select().where(Refund.id == refund_id)).first()
        if refund is None:
            raise NotFound("refund")
        if refund["channel"] != "bank" or refund["status"] != "processing":
            raise Conflict("Only an approved bank refund can be marked as paid out.")
        await Refund.update(
            {Refund.status: "succeeded", Refund.completed_at: datetime.now(UTC)}
        ).where(Refund.id == refund_id)
        await record(AuditRecord(actor, "refund.paid_out", "refund", refund_id))


async def submit_stripe_refund(refund_id: int, actor: Actor) -> str:
    """Create the refund at Stripe for an approved Stripe refund (idempotent: the key is
    derived from our refund id). Returns the refund's status afterwards; on a Stripe
    error the refund stays ``processing`` with the message, to be retried."""
    row = (
        await Refund.select(
            Refund.all_columns(), Refund.payment.stripe_payment_intent.as_alias("intent")
        )
        .where(Refund.id == refund_id)
        .first()
    )
    if row is None:
        raise NotFound("refund")
    if row["channel"] != "stripe" or row["status"] != "processing":
        return str(row["status"])
    from core.payments import gateway

    try:
        client = gateway.stripe_client()
        created = await gateway.call(
            client.v1.refunds.create,
            params={
                "payment_intent": row["intent"],
                "amount": row["amount_minor"],
                "reason": "requested_by_customer",
                "metadata": {"ledgerline_refund": str(refund_id)},
            },
            options={"idempotency_key": refund_key(refund_id)},
        )
    except Exception as exc:  # any Stripe or network failure: keep it for a retry
        log.warning("stripe refund failed", refund_id=refund_id, error=str(exc))
        await Refund.update({Refund.failure_message: str(exc)[:500]}).where(Refund.id == refund_id)
        return "processing"
    status = "succeeded" if created.status in ("succeeded", "pending") else "processing"
    async with transaction():
        await Refund.update(
            {
                Refund.stripe_refund: created.id,
                Refund.status: status,
                Refund.failure_message: "" if status == "succeeded" else str(created.status),
                Refund.completed_at: datetime.now(UTC) if status == "succeeded" else None,
            }
        ).where(Refund.id == refund_id)
        await record(
            AuditRecord(
                actor,
                "refund.sent_to_stripe",
                "refund",
                refund_id,
                data={"stripe_refund": created.id, "stripe_status": created.status},
            )
        )
    return status


async def refunds(status: str | None = None, payment_id: int | None = None) -> list[dict[str, Any]]:
    q = Refund.select(
        Refund.all_columns(),
        Refund.billing_account.code.as_alias("account_code"),
        Refund.billing_account.name.as_alias("account_name"),
    )
    if status is not None:
        q = q.where(Refund.status == status)
    if payment_id is not None:
        q = q.where(Refund.payment == payment_id)
    return await q.order_by(Refund.id, ascending=False).limit(200)


async def get_refund(refund_id: int) -> dict[str, Any]:
    if not 0 < refund_id <= MAX_ID:
        raise NotFound("refund")
    row = await Refund.select().where(Refund.id == refund_id).first()
    if row is None:
        raise NotFound("refund")
    return row


async def retry_stripe_refunds(actor: Actor, limit: int = 100) -> int:
    """Send again every approved Stripe refund still waiting (after a crash or a Stripe
    error); the idempotency key makes this harmless. Returns how many succeeded."""
    rows = (
        await Refund.select(Refund.id)
        .where((Refund.channel == "stripe") & (Refund.status == "processing"))
        .order_by(Refund.id)
        .limit(limit)
    )
    done = 0
    for row in rows:
        if await submit_stripe_refund(row["id"], actor) == "succeeded":
            done += 1
    return done
