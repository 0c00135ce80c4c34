"""Receipt emails: one per payment, recorded before it is sent.

``queue_receipts`` finds recent successful payments with no ``receipt_delivery`` row
and inserts one each (the unique index on ``payment`` makes a second insert a no-op);
the job ``send_receipt`` then claims the row (pending/failed → sending) in its own
transaction before talking to SMTP and marks it sent afterwards. A job that runs twice,
or runs again after a crash mid-send, finds the row no longer claimable and sends
nothing: a receipt goes out at most once; a row stuck in ``sending`` is shown to staff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.audit.log import Actor, AuditRecord, record
from core.db import transaction
from core.identity.tables import User
from core.money import Money, format_money
from core.notifications.mailer import mailer
from core.payments.tables import Payment
from core.wallet.history import Receipt, load_receipt
from core.wallet.tables import ReceiptDelivery

RECEIPT_WINDOW = timedelta(days=7)  # payments older than this when first seen get none
CLAIMABLE = ("pending", "failed")
MAX_SEND_TRIES = 5
SYSTEM = Actor.system("wallet.receipts")


def receipt_email(receipt: Receipt, base_url: str) -> tuple[str, str]:
    """Subject and plain-text body of a receipt email (pure)."""
    amount = format_money(Money.from_minor(receipt.amount_minor, receipt.currency))
    lines = [
        f"Thank you for your payment of {amount}.",
        "",
        f"Receipt:         {receipt.number}",
        f"Date:            {receipt.received_at:%d %b %Y}",
        f"Billing account: {receipt.account_name} ({receipt.account_code})",
        f"Method:          {receipt.method_label}" + (" (autopay)" if receipt.autopay else ""),
    ]
    if receipt.reference:
        lines.append(f"Reference:       {receipt.reference}")
    if receipt.invoices:
        lines += ["", "Invoices paid:"]
        for inv in receipt.invoices:
            paid = format_money(Money.from_minor(inv["amount_minor"], receipt.currency))
            lines.append(f"  {inv['number'] or 'invoice'}: {paid}")
    if receipt.unapplied_minor:
        credit = format_money(Money.from_minor(receipt.unapplied_minor, receipt.currency))
        lines += ["", f"Kept as credit on your account: {credit}"]
    lines += ["", f"View the receipt: {base_url}/wallet/receipts/{receipt.payment_id}", ""]
    return f"Payment receipt {receipt.number}: {amount}", "\n".join(lines)


async def _recipient(receipt: Receipt) -> str:
    if receipt.created_by_user is not None:
        user = (
            await User.select(User.email, User.is_active)
            .where(User.id == receipt.created_by_user)
            .first()
        )
        if user is not None and user["is_active"] and user["email"]:
            return str(user["email"])
    return receipt.bill_to_email


async def queue_receipt(payment_id: int) -> int | None:
    """Record that a payment's receipt is due; returns the delivery id, or None when it
    was already recorded (or the payment is not a successful one)."""
    payment = await Payment.select(Payment.status).where(Payment.id == payment_id).first()
    if payment is None or payment["status"] != "succeeded":
        return None
    receipt = await load_receipt(payment_id)
    to = await _recipient(receipt)
    now = datetime.now(UTC)
    status = "pending" if to else "skipped"
    rows = await ReceiptDelivery.insert(
        ReceiptDelivery(payment=payment_id, to_email=to, status=status, created_at=now)
    ).on_conflict(action="DO NOTHING")
    return int(rows[0]["id"]) if rows else None


async def queue_receipts(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Record the receipt of every recent successful payment that has none yet; returns
    the new delivery ids with an address to send to."""
    now = now or datetime.now(UTC)
    recent = await Payment.select(Payment.id).where(
        (Payment.status == "succeeded") & (Payment.created_at >= now - RECEIPT_WINDOW)
    )
    ids = [r["id"] for r in recent]
    have = {
        r["payment"]
        for r in await ReceiptDelivery.select(ReceiptDelivery.payment).where(
            ReceiptDelivery.payment.is_in(ids or [-1])
        )
    }
    rows = [{"id": i} for i in sorted(set(ids) - have)[:limit]]
    queued = []
    for r in rows:
        delivery = await queue_receipt(r["id"])
        if delivery is not None:
            status = (
                await ReceiptDelivery.select(ReceiptDelivery.status)
                .where(ReceiptDelivery.id == delivery)
                .first()
            )
            if status and status["status"] == "pending":
                queued.append(delivery)
    return queued


async def pending_receipts(limit: int = 500) -> list[int]:
    """Deliveries waiting to be (re)sent: pending, or failed with tries left."""
    rows = (
        await ReceiptDelivery.select(ReceiptDelivery.id)
        .where(
            (ReceiptDelivery.status == "pending")
            | ((ReceiptDelivery.status == "failed") & (ReceiptDelivery.tries < MAX_SEND_TRIES))
        )
        .order_by(ReceiptDelivery.id)
        .limit(limit)
    )
    return [r["id"] for r in rows]


async def _claim(delivery_id: int) -> dict | None:
    async with transaction():
        rows = (
            await ReceiptDelivery.update(
                {
                    ReceiptDelivery.status: "sending",
                    ReceiptDelivery.tries: ReceiptDelivery.tries + 1,
                }
            )
            .where(
                (ReceiptDelivery.id == delivery_id)
                & ReceiptDelivery.status.is_in(list(CLAIMABLE))
                & (ReceiptDelivery.tries < MAX_SEND_TRIES)
            )
            .returning(ReceiptDelivery.payment, ReceiptDelivery.to_email, ReceiptDelivery.tries)
        )
    return rows[0] if rows else None


async def send_receipt(delivery_id: int, base_url: str) -> str:
    """Send one receipt email; returns the delivery's resulting status ("sent"), or
    "not_claimable" when another run already took it. An SMTP failure marks the row
    failed (to be retried) and raises."""
    claimed = await _claim(delivery_id)
    if claimed is None:
        return "not_claimable"
    receipt = await load_receipt(claimed["payment"])
    subject, text = receipt_email(receipt, base_url)
    try:
        message_id = await mailer().send(claimed["to_email"], subject, text)
    except Exception as exc:
        async with transaction():
            await ReceiptDelivery.update(
                {ReceiptDelivery.status: "failed", ReceiptDelivery.last_error: repr(exc)[:2000]}
            ).where(ReceiptDelivery.id == delivery_id)
        raise
    async with transaction():
        await ReceiptDelivery.update(
            {
                ReceiptDelivery.status: "sent",
                ReceiptDelivery.message_id: message_id[:200],
                ReceiptDelivery.sent_at: datetime.now(UTC),
            }
        ).where(ReceiptDelivery.id == delivery_id)
        await record(
            AuditRecord(
                SYSTEM,
                "payment.receipt_sent",
                "payment",
                claimed["payment"],
                data={"delivery": delivery_id, "try": claimed["tries"]},
            )
        )
    return "sent"
