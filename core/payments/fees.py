"""Stripe processing fees: booked per settled charge so the ledger's Stripe balance
(clearing) follows Stripe's own balance, which receives the charge net of its fee.

When a Stripe payment settles, the charge's balance transaction is read from Stripe
(``latest_charge.balance_transaction`` of the PaymentIntent) and its ``fee`` posted in
the balance transaction's currency: debit Payment processing fees (6300), credit Stripe
balance (1010). The entry's source is the intent's first payment (``source_type=
"stripe_fee"``, the payment id, ``event="booked"``): booked at most once, and the Stripe
reconciliation maps it to the intent through that payment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe
import structlog

from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import DomainError
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.ledger.tables import JournalEntry
from core.payments import gateway
from core.payments.tables import Payment

log = structlog.get_logger("ledgerline.payments")

SOURCE_TYPE = "stripe_fee"  # source id: the intent's first payment
EVENT = "booked"


def charge_fee(intent: Mapping[str, Any]) -> tuple[str, int, str] | None:
    """(currency, fee minor, balance transaction id) of a PaymentIntent retrieved with
    ``latest_charge.balance_transaction`` expanded; None when Stripe has no balance
    transaction for it yet."""
    charge = intent.get("latest_charge")
    if not isinstance(charge, Mapping):
        return None
    txn = charge.get("balance_transaction")
    if not isinstance(txn, Mapping):
        return None
    return str(txn.get("currency") or "").upper(), int(txn.get("fee") or 0), str(txn["id"])


async def _first_payment(payment_intent: str) -> dict[str, Any] | None:
    return (
        await Payment.select(
            Payment.id,
            Payment.received_at,
            Payment.billing_account.issuing_entity.as_alias("issuing_entity"),
        )
        .where(Payment.stripe_payment_intent == payment_intent)
        .order_by(Payment.id)
        .first()
    )


async def _booked(payment_id: int) -> bool:
    return await JournalEntry.exists().where(
        (JournalEntry.source_type == SOURCE_TYPE)
        & (JournalEntry.source_id == payment_id)
        & (JournalEntry.event == EVENT)
    )


async def record_fee(
    payment_intent: str, currency_code: str, fee: int, txn_id: str, actor: Actor
) -> int | None:
    """Post a fee Stripe reported for the intent's charge (balance transaction
    ``txn_id``), inside the caller's transaction or its own. Idempotent: None when the
    fee is booked already, nothing was recorded for the intent, or the fee is zero."""
    payment = await _first_payment(payment_intent) if payment_intent else None
    if payment is None or fee <= 0:
        return None
    async with transaction():
        locked = await for_update(Payment.select(Payment.id).where(Payment.id == payment["id"]))
        if not locked or await _booked(int(payment["id"])):
            return None
        entry_id = await post(
            EntrySpec(
                issuing_entity_id=int(payment["issuing_entity"]),
                currency=currency_code,
                effective_date=payment["received_at"].date(),
                source_type=SOURCE_TYPE,
                source_id=int(payment["id"]),
                event=EVENT,
                description=f"Stripe processing fee {txn_id}"[:500],
                lines=[debit(acct.PROCESSING_FEES, fee), credit(acct.STRIPE_BALANCE, fee)],
            )
        )
        await record(
            AuditRecord(
                actor,
                "payment.stripe_fee_booked",
                "payment",
                int(payment["id"]),
                data={"payment_intent": payment_intent, "fee": fee, "balance_transaction": txn_id},
            )
        )
    return entry_id


async def book_stripe_fee(
    payment_intent: str, actor: Actor, client: stripe.StripeClient | None = None
) -> int | None:
    """Read the settled intent's charge balance transaction from Stripe and post its
    processing fee (``record_fee``). Returns the entry id, or None when already booked,
    nothing was recorded for the intent, or Stripe reports no fee (yet)."""
    if not payment_intent:
        return None
    payment = await _first_payment(payment_intent)
    if payment is None or await _booked(int(payment["id"])):
        return None
    client = client or gateway.stripe_client()
    intent = await gateway.call(
        client.v1.payment_intents.retrieve,
        payment_intent,
        params={"expand": ["latest_charge.balance_transaction"]},
    )
    found = charge_fee(gateway.as_dict(intent))
    if found is None:
        return None
    currency_code, fee, txn_id = found
    return await record_fee(payment_intent, currency_code, fee, txn_id, actor)


async def book_stripe_fee_quietly(payment_intent: str, actor: Actor) -> None:
    """``book_stripe_fee`` that never fails the settlement it follows: a Stripe or
    database problem is logged, and the next settle of the attempt tries again."""
    try:
        await book_stripe_fee(payment_intent, actor)
    except (stripe.StripeError, DomainError, LookupError, ValueError) as exc:
        log.warning("stripe fee not booked", payment_intent=payment_intent, error=repr(exc))
