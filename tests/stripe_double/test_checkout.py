"""Checkout sessions and the hosted card page, end to end with a verified webhook."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import stripe

from tests.stripe_double.support import Receiver, control, http

CARD = {"card_expiry": "12 / 34", "card_cvc": "123", "name": "Ada Lovelace"}


def _session(client: stripe.StripeClient, **extra: object) -> stripe.checkout.Session:
    params = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 2,
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 1250,
                    "product_data": {"name": "Invoice INV-2024-0042"},
                },
            },
            {
                "quantity": 1,
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 500,
                    "product_data": {"name": "Invoice INV-2024-0043"},
                },
            },
        ],
        "success_url": "https://portal.test/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.test/invoices",
        "customer_email": "ap@acme.test",
        "metadata": {"payment_attempt": "att_7"},
        "payment_intent_data": {"metadata": {"payment_attempt": "att_7"}},
        **extra,
    }
    return client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "cs"})  # type: ignore[arg-type]


def test_hosted_checkout_completes_and_webhook_verifies(
    client: stripe.StripeClient, url: str, receiver: Receiver
) -> None:
    session = _session(client)
    assert session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.amount_total) == (
        "open",
        "unpaid",
        3000,
    )
    assert session.url.startswith(url + "/_hosted/checkout/")
    page = http.get(session.url)
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert 'for="card-number"' in page.text
    assert "Invoice INV-2024-0042" in page.text
    assert "EUR 30.00" in page.text
    assert "<script" not in page.text
    assert "http" not in page.text.split("<body>")[1].replace("https://portal.test/invoices", "")
    done = http.post(session.url, data={"card_number": "4242 4242 4242 4242", **CARD})
    assert done.status_code == 303
    assert done.headers["location"] == f"https://portal.test/paid?session={session.id}"
    completed = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent"]}
    )
    assert (completed.status, completed.payment_status) == ("complete", "paid")
    pi = completed.payment_intent
    assert (pi.status, pi.amount, pi.currency) == ("succeeded", 3000, "eur")
    assert pi.metadata.to_dict() == {"payment_attempt": "att_7"}
    assert completed.customer_details.name == "Ada Lovelace"
    control(url, "/_test/webhooks/flush")
    events = receiver.events("checkout.session.completed")
    assert len(events) == 1
    assert events[0].data.object.id == session.id
    assert events[0].data.object.payment_intent == pi.id
    assert receiver.rejected() == []
    line_items = client.v1.checkout.sessions.line_items.list(session.id)
    assert [i.quantity for i in line_items.data] == [2, 1]
    again = http.get(session.url)
    assert "already complete" in again.text


def test_hosted_checkout_decline_then_success(client: stripe.StripeClient, url: str) -> None:
    session = _session(client)
    declined = http.post(session.url, data={"card_number": "4000000000009995", **CARD})
    assert declined.status_code == 402
    assert 'role="alert"' in declined.text
    assert "insufficient funds" in declined.text
    invalid = http.post(session.url, data={"card_number": "4242", "card_expiry": "13/99"})
    assert invalid.status_code == 422
    assert 'aria-invalid="true"' in invalid.text
    assert 'id="card-number-error"' in invalid.text
    done = http.post(session.url, data={"card_number": "4242424242424242", **CARD})
    assert done.status_code == 303
    completed = client.v1.checkout.sessions.retrieve(session.id)
    pi = client.v1.payment_intents.retrieve(completed.payment_intent)
    assert pi.status == "succeeded"
    charges = control(url, "/_test/state")["charges"]
    assert (charges["succeeded"], charges["failed"]) == (1, 1)
    assert charges["amount_succeeded"] == {"eur": 3000}


def test_hosted_checkout_with_three_d_secure(client: stripe.StripeClient) -> None:
    session = _session(client)
    step = http.post(session.url, data={"card_number": "4000002760003184", **CARD})
    assert step.status_code == 303
    assert "/_hosted/authenticate/pi_" in step.headers["location"]
    back = http.post(step.headers["location"], data={"result": "complete"})
    assert back.status_code == 303
    assert urlsplit(back.headers["location"]).path == f"/_hosted/checkout/{session.id}/return"
    final = http.get(back.headers["location"])
    assert final.status_code == 303
    assert parse_qs(urlsplit(final.headers["location"]).query)["session"] == [session.id]
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"


def test_setup_mode_saves_card_for_customer(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create()
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer.id,
            "currency": "usd",
            "success_url": "https://portal.test/cards?s={CHECKOUT_SESSION_ID}",
        }
    )
    page = http.get(session.url)
    assert "Save a card" in page.text
    done = http.post(session.url, data={"card_number": "4242424242424242", **CARD})
    assert done.status_code == 303
    completed = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["setup_intent"]}
    )
    assert completed.payment_status == "no_payment_required"
    assert completed.setup_intent.status == "succeeded"
    methods = client.v1.customers.payment_methods.list(customer.id)
    assert [m.id for m in methods.data] == [completed.setup_intent.payment_method]


def test_amount_shortcut_and_expire(client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "amount": 1999, "currency": "usd"}  # type: ignore[typeddict-unknown-key]
    )
    assert session.amount_total == 1999
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired"
    assert http.get(session.url).status_code == 410
