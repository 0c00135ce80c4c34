"""Stripe webhook event handlers of this area, dispatched by ``core.payments`` after the
event's signature is verified and its id deduplicated.

``HANDLERS`` maps a Stripe event type to ``async def handler(event_type, obj) -> None``;
a handler re-reads the object's current state from Stripe before acting (events may
arrive duplicated and in any order) and must be idempotent.

Every dispute event leads to the same thing: the dispute is read again from Stripe and
the chargeback brought up to date (``core.collections.chargebacks.sync_dispute``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.collections.chargebacks import on_dispute_event

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]

DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
)

HANDLERS: dict[str, EventHandler] = dict.fromkeys(DISPUTE_EVENTS, on_dispute_event)
