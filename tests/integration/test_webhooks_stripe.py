"""Stripe webhooks: every event delivered three times, shuffled, plus a tampered body and
a stale timestamp, to the real portal's /webhooks/stripe by this module's Stripe double →
one application each, the forged ones refused (400), the books balanced. A handler that
fails leaves nothing behind (not even the event id), so Stripe's redelivery applies it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
import pytest

from core.ledger.tables import JournalEntry
from core.payments import faults, gateway
from core.payments import stripe_events as pay_events
from core.payments.attempts import (
    PayItem,
    charge_saved_method,
    create_attempt,
    get_attempt,
    start_checkout,
)
from core.payments.tables import Payment, StripeWebhookEvent
from core.payments.webhooks import InvalidWebhook, receive
from tests.conftest import STRIPE_TEST_WEBHOOK_SECRET
from tests.integration import test_payments_http as http_tests
from tests.integration.test_payments_world import (
    ACTOR,
    World,
    assert_books,
    configure_gateway,
    control,
    succeeded_charges,
)

portal = http_tests.portal
world = http_tests.world


def _sign(payload: bytes, timestamp: int | None = None) -> str:
    """Stripe's scheme: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(
        STRIPE_TEST_WEBHOOK_SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return f"t={t},v1={mac}"


async def test_duplicated_shuffled_forged_deliveries_apply_once(world: World, portal) -> None:
    # 1. A saved-method charge whose answer we "lost" (crash after Stripe's call).
    saved = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(world.invoices["a"], 10000)],
        kind="saved_method",
        user_id=world.payer,
        actor=ACTOR,
        stripe_customer=world.stripe_customer,
        payment_method=world.payment_method,
    )
    faults.arm("after_stripe")
    with pytest.raises(faults.InjectedCrash):
        await charge_saved_method(
            saved.id,
            stripe_customer=world.stripe_customer,
            payment_method=world.payment_method,
            actor=ACTOR,
            off_session=True,
        )
    faults.disarm_all()
    assert (await get_attempt(saved.id)).status == "unknown"
    # 2. Three invoices through Checkout, paid on the double's hosted page.
    bulk = await create_attempt(
        organization_root_id=world.root,
        items=[
            PayItem(world.invoices["b"], 25000),
            PayItem(world.invoices["c"], 7550),
            PayItem(world.invoices["big"], 1000),
        ],
        kind="checkout",
        user_id=world.payer,
        actor=ACTOR,
    )
    url = await start_checkout(bulk.id, ACTOR)
    async with httpx.AsyncClient(trust_env=False, timeout=30) as browser:
        paid = await browser.post(
            url,
            data={
                "email": "payer@pay.example",
                "card_number": "4242 4242 4242 4242",
                "card_expiry": "12 / 34",
                "card_cvc": "123",
                "name": "Pat Payer",
            },
        )
    assert paid.status_code == 303, paid.text[:500]
    assert (await get_attempt(bulk.id)).status == "processing"  # nobody told us yet
    # 3. Every event three times, shuffled; then a tampered and a stale one.
    sent = control(
        portal.double.url, "/_test/events/redeliver", {"times": 3, "shuffle": True, "seed": 7}
    )["data"]
    assert len(sent) >= 3 * 8
    codes = {a["status"] for d in sent for a in d["attempts"]}
    assert codes == {200}, codes
    event = next(d for d in sent if d["event_type"] == "payment_intent.succeeded")
    tampered = control(
        portal.double.url, f"/_test/events/{event['event_id']}/redeliver", {"tamper": True}
    )["data"]
    stale = control(
        portal.double.url,
        f"/_test/events/{event['event_id']}/redeliver",
        {"stale_seconds": 400},
    )["data"]
    assert [a["status"] for d in tampered + stale for a in d["attempts"]] == [400, 400]
    # One application each.
    assert (await get_attempt(saved.id)).status == "succeeded"
    assert (await get_attempt(bulk.id)).status == "succeeded"
    assert succeeded_charges(portal.double.url) == 2
    payments = await Payment.select(Payment.attempt, Payment.amount_minor)
    # One payment per billing account of an attempt (b and big: USD root; c: the child).
    assert sorted((p["attempt"], p["amount_minor"]) for p in payments) == [
        (saved.id, 10000),
        (bulk.id, 7550),
        (bulk.id, 25000 + 1000),
    ]
    assert await JournalEntry.count().where(JournalEntry.source_type == "payment") == 3
    handled = await StripeWebhookEvent.select(StripeWebhookEvent.event_id)
    assert len(handled) == len({r["event_id"] for r in handled})
    await assert_books()


async def test_failed_handler_keeps_nothing_and_the_retry_applies(
    world: World, portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_gateway(portal.double.url, portal.url)
    calls: list[str] = []

    async def flaky(event_type: str, obj: dict) -> None:
        calls.append(obj["id"])
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    monkeypatch.setitem(pay_events.HANDLERS, "ledgerline.test", flaky)
    payload = json.dumps(
        {
            "id": "evt_test_flaky",
            "object": "event",
            "type": "ledgerline.test",
            "data": {"object": {"id": "obj_1", "object": "thing"}},
        }
    ).encode()
    with pytest.raises(RuntimeError):
        await receive(payload, _sign(payload))
    assert await StripeWebhookEvent.count() == 0
    assert await receive(payload, _sign(payload)) == "processed"
    assert await receive(payload, _sign(payload)) == "duplicate"
    assert calls == ["obj_1", "obj_1"]
    # Forged: bad signature, stale timestamp, no header, not JSON.
    for signature in (
        _sign(payload + b" "),
        _sign(payload, int(time.time()) - 301),
        "",
        "t=1,v1=00",
    ):
        with pytest.raises(InvalidWebhook):
            await receive(payload, signature)
    unknown = json.dumps(
        {"id": "evt_x", "object": "event", "type": "x.y", "data": {"object": {}}}
    ).encode()
    assert await receive(unknown, _sign(unknown)) == "ignored"
    async with httpx.AsyncClient(base_url=portal.url, trust_env=False) as c:
        r = await c.post(
            "/webhooks/stripe", content=unknown, headers={"Stripe-Signature": _sign(unknown)}
        )
        assert (r.status_code, r.json()) == (200, {"received": "ignored"})
        r = await c.post("/webhooks/stripe", content=unknown, headers={"Stripe-Signature": "x"})
        assert r.status_code == 400
    assert gateway.config().webhook_secret == STRIPE_TEST_WEBHOOK_SECRET
