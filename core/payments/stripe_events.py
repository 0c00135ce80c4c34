"""Stripe webhook event handlers of the payments area (see ``core.payments.webhooks``).

Each handler finds our attempt (the ``ledgerline_attempt`` metadata, else the stored
PaymentIntent or Checkout session id) and calls ``settle_attempt``, which re-reads the
object's CURRENT state from Stripe before acting: events may come duplicated, late or out
of order, and the event body is never trusted for money.
"""

from __future__ import annotations

from typing import Any

from core.audit.log import Actor
from core.payments.attempts import METADATA_KEY, settle_attempt
from core.payments.tables import PaymentAttempt

EventHandler = Any
ACTOR = Actor.system("stripe.webhook")


async def _attempt_id(obj: dict[str, Any], column: Any) -> int | None:
    raw = str((obj.get("metadata") or {}).get(METADATA_KEY, ""))
    if raw.isdigit():
        found = (
            await PaymentAttempt.select(PaymentAttempt.id)
            .where(PaymentAttempt.id == int(raw))
            .first()
        )
        if found:
            return int(found["id"])
    if obj.get("id"):
        row = await PaymentAttempt.select(PaymentAttempt.id).where(column == obj["id"]).first()
        if row:
            return int(row["id"])
    return None


async def on_payment_intent(event_type: str, obj: dict[str, Any]) -> None:
    attempt_id = await _attempt_id(obj, PaymentAttempt.stripe_payment_intent)
    if attempt_id is not None:
        await settle_attempt(attempt_id, ACTOR, payment_intent=obj.get("id"))


async def on_checkout_session(event_type: str, obj: dict[str, Any]) -> None:
    attempt_id = await _attempt_id(obj, PaymentAttempt.stripe_checkout_session)
    if attempt_id is not None:
        pi = obj.get("payment_intent")
        await settle_attempt(attempt_id, ACTOR, payment_intent=pi if isinstance(pi, str) else None)


HANDLERS: dict[str, EventHandler] = {
    "payment_intent.succeeded": on_payment_intent,
    "payment_intent.payment_failed": on_payment_intent,
    "payment_intent.processing": on_payment_intent,
    "payment_intent.requires_action": on_payment_intent,
    "payment_intent.canceled": on_payment_intent,
    "checkout.session.completed": on_checkout_session,
    "checkout.session.expired": on_checkout_session,
    "checkout.session.async_payment_succeeded": on_checkout_session,
    "checkout.session.async_payment_failed": on_checkout_session,
}
