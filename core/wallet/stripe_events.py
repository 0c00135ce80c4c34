"""Stripe webhook event handlers of this area, dispatched by ``core.payments`` after the
event's signature is verified and its id deduplicated.

``HANDLERS`` maps a Stripe event type to ``async def handler(event_type, obj) -> None``;
a handler re-reads the object's current state from Stripe before acting (events may
arrive duplicated and in any order) and must be idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.wallet.methods import complete_setup_session, record_setup_intent

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


async def setup_intent_succeeded(event_type: str, obj: dict[str, Any]) -> None:
    """A SetupIntent succeeded (Checkout in setup mode, or any other setup flow): record
    its method, as Stripe reports it now."""
    seti = obj.get("id")
    if isinstance(seti, str) and seti.startswith("seti_"):
        await record_setup_intent(seti)


async def checkout_session_completed(event_type: str, obj: dict[str, Any]) -> None:
    """Only setup-mode sessions are ours (payment-mode ones belong to core.payments)."""
    session = obj.get("id")
    if obj.get("mode") == "setup" and isinstance(session, str):
        await complete_setup_session(session, root_org_id=None)


HANDLERS: dict[str, EventHandler] = {
    "setup_intent.succeeded": setup_intent_succeeded,
    "checkout.session.completed": checkout_session_completed,
}
