"""The Stripe gateway: one configured client factory and our idempotency keys.

``configure(settings)`` is called at app and worker start-up. ``stripe_client()`` builds
a ``stripe.StripeClient`` for the configured key and API base (the Stripe test double
in the embedded run and the tests; real Stripe when ``STRIPE_API_BASE`` is unset). Every
mutating Stripe call passes ``idempotency_key(attempt_id, operation)``: the key is
derived from our own payment attempt id, so repeating a call after a crash returns the
object Stripe already created instead of charging again.

The SDK is synchronous (requests); ``call`` runs one SDK call in a worker thread so the
event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import stripe

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StripeConfig:
    api_key: str
    api_base: str | None
    webhook_secret: str
    base_url: str  # our public URL: Checkout success/cancel pages come back here


_config: StripeConfig | None = None
WEBHOOK_TOLERANCE_SECONDS = 300


def configure(settings: Any) -> None:
    """Take the Stripe settings (``core.settings.Settings``) for this process."""
    global _config
    _config = StripeConfig(
        api_key=settings.stripe_api_key,
        api_base=settings.stripe_api_base,
        webhook_secret=settings.stripe_webhook_secret,
        base_url=settings.base_url,
    )


def config() -> StripeConfig:
    if _config is None:
        raise RuntimeError("Stripe is not configured: call core.payments.gateway.configure()")
    return _config


def stripe_client() -> stripe.StripeClient:
    """A client for the configured account: plain HTTP session that ignores proxy
    settings from the environment, no SDK-level retries (we retry with our own keys)."""
    cfg = config()
    session = requests.Session()
    session.trust_env = False
    kwargs: dict[str, Any] = {}
    if cfg.api_base:
        kwargs["base_addresses"] = {"api": cfg.api_base}
    return stripe.StripeClient(
        cfg.api_key,
        http_client=stripe.RequestsClient(session=session, timeout=30),
        max_network_retries=0,
        **kwargs,
    )


def idempotency_key(attempt_id: int, operation: str) -> str:
    return f"attempt-{attempt_id}-{operation}"


async def call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run one blocking SDK call off the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def as_dict(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain dicts and lists (what event handlers receive)."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)
