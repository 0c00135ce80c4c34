"""JSON API (v1): metered usage ingestion, authenticated by organization API keys.

``POST /api/v1/usage`` with ``Authorization: Bearer ll_live_…`` and a body
``{"events": [...]}`` (at most 10,000 events). The handler only authenticates,
rate-limits, decodes and shapes the answer; ``core.usage.ingest`` validates and stores.
Order of checks: key (401), per-key rate limit (429 + Retry-After), body (400, 413,
422), then per-event results (200).
"""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post

from core.usage import ingest as usage
from core.usage.keys import authenticate
from portal.errors import problem

# JSON numbers with a fraction are read as Decimal from their literal text, never as
# binary floats (see core.usage.ingest).
_decode = msgspec.json.Decoder(float_hook=Decimal).decode
MAX_BODY_BYTES = 64 * 1024 * 1024  # 10,000 events with 4 KB of properties each, and more


class ResultOut(msgspec.Struct, omit_defaults=True):
    id: str | None
    status: str
    error: str | None = None


class ReportOut(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: int
    results: list[ResultOut]


_encode = msgspec.json.Encoder().encode


def _unauthorized() -> Response[Any]:
    response = problem(401, "A valid API key is required: Authorization: Bearer <key>.")
    response.headers["WWW-Authenticate"] = 'Bearer realm="ledgerline"'
    return response


async def _rate_limited(request: Request[Any, Any, Any], key: str) -> int | None:
    """Fixed window per key in Redis; returns the seconds to wait when over the limit."""
    settings = request.app.state.settings
    limit, window = settings.usage_rate_limit, settings.usage_rate_window
    now = time.time()
    slot = int(now // window)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    name = f"ll:usage:rate:{request.app.state.namespace}:{digest}:{slot}"
    redis = request.app.state.redis
    async with redis.pipeline(transaction=True) as pipe:
        count, _ = await pipe.incr(name).expire(name, window + 1).execute()
    if count > limit:
        return max(1, int((slot + 1) * window - now + 0.999))
    return None


class UsageApiController(Controller):
    path = "/api/v1/usage"
    tags = ["usage"]

    @post(
        "/",
        summary="Ingest a batch of usage events",
        status_code=200,
        request_max_body_size=MAX_BODY_BYTES,
    )
    async def ingest_usage(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Body ``{"events": [{"id", "billing_account", "metric", "quantity",
        "timestamp", "properties"?}, ...]}``; answers per event accepted, duplicate or
        rejected (with the reason). Good events of a batch are stored together."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return _unauthorized()
        organization_id = await authenticate(key)
        if organization_id is None:
            return _unauthorized()
        wait = await _rate_limited(request, key)
        if wait is not None:
            response = problem(429, f"Rate limit exceeded for this key; retry in {wait} s.")
            response.headers["Retry-After"] = str(wait)
            return response
        body = await request.body()
        try:
            payload = _decode(body)
        except msgspec.DecodeError:
            return problem(400, "The body is not valid JSON.")
        if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
            return problem(422, 'The body must be an object with an "events" array.')
        events = payload["events"]
        if len(events) > usage.MAX_EVENTS:
            return problem(
                413,
                f"At most {usage.MAX_EVENTS} events per batch; this one has {len(events)}.",
                max_events=usage.MAX_EVENTS,
            )
        report = await usage.ingest(organization_id, events)
        out = ReportOut(
            report.accepted,
            report.duplicates,
            report.rejected,
            [ResultOut(r.id, r.status, r.error) for r in report.results],
        )
        return Response(_encode(out), status_code=200, media_type="application/json")
