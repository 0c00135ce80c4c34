"""``POST /webhooks/stripe``: Stripe's events, verified, deduplicated and dispatched by
``core.payments.webhooks`` (exempt from CSRF: Stripe signs them instead)."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response, post

from core.payments.webhooks import InvalidWebhook, receive

log = structlog.get_logger("ledgerline.webhooks")


@post("/webhooks/stripe", name="stripe_webhook", status_code=200, include_in_schema=False)
async def stripe_webhook(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    body = await request.body()
    try:
        outcome = await receive(body, request.headers.get("stripe-signature"))
    except InvalidWebhook as exc:
        log.warning("stripe webhook refused", reason=str(exc)[:200])
        return Response({"error": "invalid signature"}, status_code=400)
    except Exception:
        # Nothing was kept (the event id neither): Stripe delivers it again later.
        log.exception("stripe webhook handler failed")
        return Response({"error": "handler failed; retry later"}, status_code=500)
    return Response({"received": outcome}, status_code=200)
