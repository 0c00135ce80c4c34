"""Test controls under ``/_test/`` (no API key; never part of Stripe's API).

Parameters may be form-encoded (bracket notation) or a JSON object.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from typing import Any

from stripe_double import cards
from stripe_double.asgi import Request, Response, json_response
from stripe_double.errors import invalid, missing, missing_param
from stripe_double.forms import parse_form
from stripe_double.params import Params
from stripe_double.resources import disputes
from stripe_double.state import State
from stripe_double.webhooks import Dispatcher, Endpoint


def _params(req: Request) -> Params:
    source = req.body if req.method == "POST" else req.query
    if (req.header("content-type") or "").startswith("application/json") and req.body:
        try:
            data = json.loads(req.body)
        except ValueError:
            raise invalid("Invalid JSON body.") from None
        if not isinstance(data, dict):
            raise invalid("The JSON body must be an object.")
        return Params(_stringify(data))
    return Params(parse_form(source))


def _stringify(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return {str(k): _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    return "" if value is None else str(value)


def _dispatcher(state: State) -> Dispatcher:
    dispatcher: Dispatcher = state.dispatcher
    return dispatcher


async def get_state(state: State, req: Request) -> Response:
    async with state.lock:
        charges = state.all("charge")
        succeeded = [c for c in charges if c["status"] == "succeeded"]
        by_key = Counter(
            state.meta[c["id"]].get("idempotency_key")
            for c in succeeded
            if state.meta[c["id"]].get("idempotency_key")
        )
        amounts: Counter[str] = Counter()
        refunded: Counter[str] = Counter()
        for charge in succeeded:
            amounts[charge["currency"]] += charge["amount"]
            refunded[charge["currency"]] += charge["amount_refunded"]
        dispatcher = _dispatcher(state)
        body = {
            "now": state.ts(),
            "charges": {
                "succeeded": len(succeeded),
                "failed": len(charges) - len(succeeded),
                "amount_succeeded": dict(amounts),
                "amount_refunded": dict(refunded),
            },
            "succeeded_charges_by_payment_intent": dict(
                Counter(c["payment_intent"] for c in succeeded)
            ),
            "succeeded_charges_by_idempotency_key": dict(by_key),
            "idempotency_keys": {k: asdict(v) for k, v in state.idempotency.stats.items()},
            "objects": {kind: len(ids) for kind, ids in state.kinds.items()},
            "webhooks": {
                "mode": state.config.webhook_mode,
                "endpoints": [e.public() for e in dispatcher.endpoints.values()],
                "deliveries": dispatcher.summary(),
            },
        }
    return json_response(200, body)


async def reset(state: State, req: Request) -> Response:
    async with state.lock:
        state.reset()
        _dispatcher(state).reset()
    return json_response(200, {"reset": True})


async def config(state: State, req: Request) -> Response:
    p = _params(req)
    if req.method == "POST":
        p.only(
            ("latency", "webhook_mode", "webhook_retry_delays", "webhook_timeout", "api_version")
        )
        async with state.lock:
            cfg = state.config
            if "latency" in p:
                cfg.latency = _float(p, "latency")
            if "webhook_mode" in p:
                cfg.webhook_mode = p.enum("webhook_mode", ("auto", "manual")) or "auto"
            if "webhook_retry_delays" in p:
                delays = p.list("webhook_retry_delays")
                cfg.webhook_retry_delays = [_float(Params({"d": d}), "d") for d in delays]
            if "webhook_timeout" in p:
                cfg.webhook_timeout = _float(p, "webhook_timeout")
            if "api_version" in p:
                cfg.api_version = p.str("api_version", required=True) or cfg.api_version
    return json_response(200, state.config.public())


async def clock(state: State, req: Request) -> Response:
    """Move the double's clock forward (``advance`` seconds): key expiry, timestamps."""
    p = _params(req).only(("advance",))
    async with state.lock:
        state.clock_offset += _float(p, "advance")
        return json_response(200, {"now": state.ts(), "offset": state.clock_offset})


async def open_dispute(state: State, req: Request) -> Response:
    p = _params(req).only(("charge", "payment_intent", "reason", "amount"))
    async with state.lock:
        ctx = state.ctx(req.base_url)
        charge_id = p.str("charge")
        if not charge_id and p.str("payment_intent"):
            pi = state.get("payment_intent", p.str("payment_intent"), "payment_intent")
            charge_id = pi["latest_charge"]
        if not charge_id:
            raise missing_param("charge")
        charge = state.get("charge", charge_id, "charge")
        reason = p.enum("reason", disputes.REASONS, default="fraudulent") or "fraudulent"
        dispute = disputes.open_dispute(ctx, charge, reason=reason, amount=p.int("amount"))
        return json_response(200, dispute)


async def close_dispute(state: State, req: Request, id: str) -> Response:
    p = _params(req).only(("outcome",))
    outcome = p.enum("outcome", ("won", "lost"))
    if outcome is None:
        raise missing_param("outcome")
    async with state.lock:
        dispute = state.get("dispute", id)
        disputes.decide(state.ctx(req.base_url), dispute, won=outcome == "won")
        return json_response(200, dispute)


async def deliveries(state: State, req: Request) -> Response:
    p = _params(req).only(("event", "endpoint", "state", "type"))
    event, endpoint, status, kind = (p.str(n) for n in ("event", "endpoint", "state", "type"))
    found = [
        d.public()
        for d in _dispatcher(state).deliveries.values()
        if event in (None, d.event_id)
        and endpoint in (None, d.endpoint_id)
        and status in (None, d.state)
        and kind in (None, d.event_type)
    ]
    return json_response(200, {"object": "list", "data": found})


_SEND_PARAMS = ("endpoint", "times", "shuffle", "seed", "stale_seconds", "timestamp", "tamper")


async def redeliver_one(state: State, req: Request, id: str) -> Response:
    p = _params(req).only(_SEND_PARAMS)
    event = state.get("event", id)
    return await _send(state, p, [event])


async def redeliver_many(state: State, req: Request) -> Response:
    """Send events (``events[]``, or all of ``type``, or all) again: duplicates, shuffled…"""
    p = _params(req).only((*_SEND_PARAMS, "events", "type"))
    ids_, kind = p.list("events"), p.str("type")
    if ids_:
        events = [state.get("event", i, "events") for i in ids_]
    else:
        events = [e for e in reversed(state.all("event")) if kind in (None, e["type"])]
    return await _send(state, p, events)


async def _send(state: State, p: Params, events: list[dict[str, Any]]) -> Response:
    dispatcher = _dispatcher(state)
    endpoint_id = p.str("endpoint")
    times = p.int("times", minimum=1) or 1
    if times > 100:
        raise invalid("times must be at most 100.", param="times")
    stale = p.int("stale_seconds", minimum=0)
    timestamp = p.int("timestamp")
    if stale is not None:
        timestamp = state.ts() - stale
    endpoint: Endpoint | None = None
    if endpoint_id:
        endpoint = dispatcher.endpoints.get(endpoint_id)
        if endpoint is None:
            raise missing("webhook_endpoint", endpoint_id, "endpoint")
    done = await dispatcher.redeliver(
        events,
        endpoint,
        times=times,
        shuffle=p.bool("shuffle"),
        seed=p.int("seed"),
        timestamp=timestamp,
        tamper=p.bool("tamper"),
    )
    return json_response(200, {"object": "list", "data": [d.public() for d in done]})


async def flush(state: State, req: Request) -> Response:
    """Wait until no delivery is pending (``retry_now`` sends scheduled retries at once)."""
    p = _params(req).only(("timeout", "retry_now"))
    timeout = _float(p, "timeout") if "timeout" in p else 10.0
    idle = await _dispatcher(state).flush(min(timeout, 60.0), retry_now=p.bool("retry_now"))
    return json_response(200, {"idle": idle, "deliveries": _dispatcher(state).summary()})


async def test_cards(state: State, req: Request) -> Response:
    rows = [
        {
            "number": c.number,
            "brand": c.brand,
            "behaviour": c.behaviour,
            "decline_code": c.decline.decline_code if c.decline else None,
            "tokens": cards.tokens_for(c),
        }
        for c in cards.all_cards()
    ]
    return json_response(200, {"object": "list", "data": rows})


def _float(p: Params, name: str) -> float:
    value = p.str(name)
    try:
        number = float(value or "")
    except ValueError:
        raise invalid(f"Invalid number: {value}", param=name) from None
    if number < 0 or number != number:
        raise invalid(f"{name} must be a non-negative number.", param=name)
    return number
