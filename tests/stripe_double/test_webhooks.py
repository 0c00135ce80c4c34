"""Webhook delivery: Stripe's signature scheme, retries, redelivery, forged deliveries."""

from __future__ import annotations

import json

import stripe

from tests.stripe_double.support import Receiver, control

PAY = {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


def _pay(client: stripe.StripeClient, key: str = "p") -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(params=PAY, options={"idempotency_key": key})  # type: ignore[arg-type]


def test_signature_is_exactly_stripes(
    client: stripe.StripeClient, url: str, receiver: Receiver
) -> None:
    _pay(client)
    control(url, "/_test/webhooks/flush")
    record = next(r for r in receiver.received if r.verified and r.event.type == "charge.succeeded")
    assert record.signature is not None
    parts = dict(item.split("=", 1) for item in record.signature.split(","))
    assert set(parts) == {"t", "v1"}
    expected = stripe.WebhookSignature.generate_signature_header(
        record.body.decode(), receiver.secret, timestamp=int(parts["t"])
    )
    assert record.signature == expected
    types = [e.type for e in receiver.events()]
    assert {"payment_intent.created", "charge.succeeded", "payment_intent.succeeded"} <= set(types)
    payload = json.loads(record.body)
    assert payload["object"] == "event"
    assert payload["livemode"] is False
    assert payload["request"]["idempotency_key"] == "p"


def test_tampered_and_stale_deliveries_fail_sdk_verification(
    client: stripe.StripeClient, url: str, receiver: Receiver
) -> None:
    _pay(client)
    control(url, "/_test/webhooks/flush")
    receiver.clear()
    event = client.v1.events.list(params={"type": "payment_intent.succeeded"}).data[0]
    tampered = control(url, f"/_test/events/{event.id}/redeliver", {"tamper": True})
    stale = control(url, f"/_test/events/{event.id}/redeliver", {"stale_seconds": 301})
    fresh = control(url, f"/_test/events/{event.id}/redeliver", {"stale_seconds": 299})
    assert [d["attempts"][0]["status"] for d in tampered["data"]] == [400]
    assert [d["attempts"][0]["status"] for d in stale["data"]] == [400]
    assert [d["attempts"][0]["status"] for d in fresh["data"]] == [200]
    errors = [r.error for r in receiver.rejected()]
    assert len(errors) == 2
    assert "No signatures found matching the expected signature" in (errors[0] or "")
    assert "Timestamp outside the tolerance zone" in (errors[1] or "")


def test_failed_deliveries_are_retried_with_back_off(
    client: stripe.StripeClient, url: str, receiver: Receiver
) -> None:
    control(url, "/_test/config", {"webhook_mode": "manual"})
    customer = client.v1.customers.create()
    control(url, "/_test/config", {"webhook_mode": "auto"})
    receiver.fail_next = 2
    client.v1.customers.update(customer.id, params={"name": "Renamed"})
    assert control(url, "/_test/webhooks/flush", {"timeout": 5})["idle"] is True
    deliveries = control(url, "/_test/deliveries?type=customer.updated")["data"]
    assert len(deliveries) == 1
    attempts = deliveries[0]["attempts"]
    assert [a["status"] for a in attempts] == [500, 500, 200]
    assert deliveries[0]["state"] == "delivered"
    assert attempts[1]["at"] - attempts[0]["at"] >= 0.04  # waited (back-off 0.05 s, 0.1 s)
    assert attempts[2]["at"] - attempts[1]["at"] >= 0.09
    assert [e.data.object.name for e in receiver.events("customer.updated")] == ["Renamed"]


def test_redeliver_duplicates_shuffled(
    client: stripe.StripeClient, url: str, receiver: Receiver
) -> None:
    control(url, "/_test/config", {"webhook_mode": "manual"})
    _pay(client, "a")
    _pay(client, "b")
    assert receiver.received == []
    result = control(
        url,
        "/_test/events/redeliver",
        {"type": "payment_intent.succeeded", "times": 3, "shuffle": True, "seed": 7},
    )
    assert len(result["data"]) == 6
    events = receiver.events("payment_intent.succeeded")
    ids = [e.id for e in events]
    assert len(ids) == 6
    assert len(set(ids)) == 2
    assert all(ids.count(i) == 3 for i in set(ids))
    assert ids != sorted(ids, key=ids.index)  # order: shuffled, not grouped
    state = control(url, "/_test/state")
    assert state["webhooks"]["deliveries"]["delivered"] == 6


def test_webhook_endpoints_api(client: stripe.StripeClient, url: str, receiver: Receiver) -> None:
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": receiver.url + "?second", "enabled_events": ["charge.refunded"]}
    )
    assert endpoint.id.startswith("we_")
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id).to_dict()
    pi = _pay(client)
    client.v1.refunds.create(params={"payment_intent": pi.id})
    control(url, "/_test/webhooks/flush")
    second = [
        d for d in control(url, "/_test/deliveries")["data"] if d["endpoint_id"] == endpoint.id
    ]
    assert [d["event_type"] for d in second] == ["charge.refunded"]
    assert second[0]["attempts"][0]["status"] == 400  # signed with its own secret
    client.v1.webhook_endpoints.delete(endpoint.id)
    assert [e.id for e in client.v1.webhook_endpoints.list().data] != [endpoint.id]
