"""Stripe webhook event handlers of this area, dispatched by ``core.payments`` after the
event's signature is verified and its id deduplicated.

``HANDLERS`` maps a Stripe event type to ``async def handler(event_type, obj) -> None``;
a handler re-reads the object's current state from Stripe before acting (events may
arrive duplicated and in any order) and must be idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

EventHandler = Callable[[str, dict[str, Any]], Awaitable[None]]

HANDLERS: dict[str, EventHandler] = {}
