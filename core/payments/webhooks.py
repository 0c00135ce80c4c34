"""Receiving Stripe webhooks: verify, deduplicate, dispatch.

1. The signature is verified with the SDK (``stripe.Webhook.construct_event``, Stripe's
   scheme, 300 s tolerance against replayed or stale deliveries); anything else is
   refused (``InvalidWebhook``, HTTP 400) and changes nothing.
2. Event types nobody handles are acknowledged and ignored.
3. In ONE transaction: the event id is inserted into ``stripe_webhook_event`` (unique) and
   every handler of the type runs (payments, wallet, collections). A redelivery finds the
   id and does nothing; a concurrent duplicate waits on the unique index until the first
   commits. A handler that fails rolls everything back (the id too) and the endpoint
   answers 500, so Stripe delivers again later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import stripe
import structlog

from core.collections.stripe_events import HANDLERS as COLLECTIONS_HANDLERS
from core.db import transaction
from core.payments import gateway
from core.payments.stripe_events import HANDLERS as PAYMENT_HANDLERS
from core.payments.tables import StripeWebhookEvent
from core.wallet.stripe_events import HANDLERS as WALLET_HANDLERS

log = structlog.get_logger("ledgerline.webhooks")


class InvalidWebhook(ValueError):
    """Bad signature, stale timestamp, or a body that is not a Stripe event."""


def handlers_for(event_type: str) -> list[object]:
    return [
        table[event_type]
        for table in (PAYMENT_HANDLERS, WALLET_HANDLERS, COLLECTIONS_HANDLERS)
        if event_type in table
    ]


async def receive(payload: bytes, signature: str | None) -> str:
    """Handle one delivery; returns ``processed``, ``duplicate`` or ``ignored``."""
    if not signature:
        raise InvalidWebhook("missing Stripe-Signature header")
    try:
        event = stripe.Webhook.construct_event(
            payload.decode("utf-8"),
            signature,
            gateway.config().webhook_secret,
            tolerance=gateway.WEBHOOK_TOLERANCE_SECONDS,
        )
    except (ValueError, UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
        raise InvalidWebhook(str(exc)) from exc
    event_id, event_type = str(event.id), str(event.type)
    handlers = handlers_for(event_type)
    if not handlers:
        return "ignored"
    obj = gateway.as_dict(event.data.object)
    async with transaction():
        inserted = await (
            StripeWebhookEvent.insert(
                StripeWebhookEvent(
                    event_id=event_id, event_type=event_type, received_at=datetime.now(UTC)
                )
            )
            .on_conflict(target=StripeWebhookEvent.event_id, action="DO NOTHING")
            .returning(StripeWebhookEvent.id)
        )
        if not inserted:
            return "duplicate"
        for handler in handlers:
            await handler(event_type, obj)  # type: ignore[operator]
    log.info("stripe event handled", event_id=event_id, event_type=event_type)
    return "processed"
