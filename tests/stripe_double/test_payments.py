"""Customers, payment methods, payment intents, charges, refunds: through the real SDK."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_double.support import API_KEY, control, http, make_client


def test_create_retrieve_update_customer(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={"email": "ap@acme.test", "name": "Acme GmbH", "metadata": {"org": "42"}},
        options={"idempotency_key": "cus-1"},
    )
    assert customer.id.startswith("cus_")
    assert customer.object == "customer"
    assert customer.livemode is False
    assert customer.metadata.to_dict() == {"org": "42"}
    updated = client.v1.customers.update(
        customer.id,
        params={"name": "Acme AG", "metadata": {"org": "", "tier": "gold"}},
        options={"idempotency_key": "cus-1-update"},
    )
    assert updated.name == "Acme AG"
    assert updated.metadata.to_dict() == {"tier": "gold"}
    assert client.v1.customers.retrieve(customer.id).email == "ap@acme.test"


def test_attach_list_detach_payment_method(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(options={"idempotency_key": "c"})
    pm = client.v1.payment_methods.attach(
        "pm_card_visa", params={"customer": customer.id}, options={"idempotency_key": "a"}
    )
    assert pm.id.startswith("pm_")
    assert pm.id != "pm_card_visa"
    assert (pm.customer, pm.card.brand, pm.card.last4) == (customer.id, "visa", "4242")
    listed = client.v1.customers.payment_methods.list(customer.id)
    assert [m.id for m in listed.data] == [pm.id]
    detached = client.v1.payment_methods.detach(pm.id, options={"idempotency_key": "d"})
    assert detached.customer is None
    assert client.v1.payment_methods.list(params={"customer": customer.id}).data == []


def test_payment_method_from_card_number(client: stripe.StripeClient) -> None:
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2040, "cvc": "123"},
        },
        options={"idempotency_key": "pm"},
    )
    assert (pm.card.brand, pm.card.last4, pm.card.exp_year) == ("mastercard", "4444", 2040)
    with pytest.raises(stripe.CardError) as bad:
        client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": "4242424242424241", "exp_month": 1, "exp_year": 2040},
            }
        )
    assert bad.value.code == "incorrect_number"


def test_payment_intent_succeeds_with_balance_transaction(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(options={"idempotency_key": "c"})
    pm = client.v1.payment_methods.attach(
        "pm_card_visa", params={"customer": customer.id}, options={"idempotency_key": "a"}
    )
    created = client.v1.payment_intents.create(
        params={
            "amount": 12345,
            "currency": "EUR",
            "customer": customer.id,
            "payment_method": pm.id,
            "metadata": {"attempt": "att_1"},
        },
        options={"idempotency_key": "pi-create"},
    )
    assert created.id.startswith("pi_")
    assert (created.status, created.currency) == ("requires_confirmation", "eur")
    assert created.client_secret.startswith(created.id + "_secret_")
    pi = client.v1.payment_intents.confirm(created.id, options={"idempotency_key": "pi-confirm"})
    assert (pi.status, pi.amount_received) == ("succeeded", 12345)
    full = client.v1.payment_intents.retrieve(
        pi.id, params={"expand": ["latest_charge.balance_transaction"]}
    )
    charge = full.latest_charge
    assert charge.id.startswith("ch_")
    assert charge.status == "succeeded"
    assert charge.paid
    assert charge.metadata.to_dict() == {"attempt": "att_1"}
    txn = charge.balance_transaction
    assert txn.id.startswith("txn_")
    assert (txn.amount, txn.fee, txn.net) == (12345, 388, 12345 - 388)  # 2.9 % + 30
    assert txn.type == "charge"
    assert txn.source == charge.id
    assert client.v1.balance_transactions.retrieve(txn.id).net == 11957
    listed = client.v1.payment_intents.list(params={"customer": customer.id})
    assert [p.id for p in listed.data] == [pi.id]


@pytest.mark.parametrize(
    ("token", "number", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "4000000000000002", "card_declined", "generic_decline"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "4000000000009995",
            "card_declined",
            "insufficient_funds",
        ),
    ],
)
def test_declined_cards(
    client: stripe.StripeClient, url: str, token: str, number: str, code: str, decline_code: str
) -> None:
    for index, payment_method in enumerate((token, _card(client, number))):
        with pytest.raises(stripe.CardError) as declined:
            client.v1.payment_intents.create(
                params={
                    "amount": 2000,
                    "currency": "usd",
                    "payment_method": payment_method,
                    "confirm": True,
                },
                options={"idempotency_key": f"decline-{index}"},
            )
        error = declined.value
        assert error.http_status == 402
        assert (error.code, error.error.decline_code) == (code, decline_code)
        pi = error.error.payment_intent
        assert pi.status == "requires_payment_method"
        assert pi.last_payment_error.decline_code == decline_code
        charge = client.v1.charges.retrieve(error.error.charge)
        assert (charge.status, charge.failure_code) == ("failed", code)
        assert charge.balance_transaction is None
    assert control(url, "/_test/state")["charges"] == {
        "succeeded": 0,
        "failed": 2,
        "amount_succeeded": {},
        "amount_refunded": {},
    }


def _card(client: stripe.StripeClient, number: str) -> str:
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 4, "exp_year": 2040}}
    )
    return pm.id


@pytest.mark.parametrize("token", ["pm_card_authenticationRequired", "4000002500003155"])
def test_three_d_secure_redirect_completes(client: stripe.StripeClient, token: str) -> None:
    pm = token if token.startswith("pm_") else _card(client, token)
    pi = client.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "payment_method": pm,
            "confirm": True,
            "return_url": "https://portal.test/pay/return?x=1",
        },
        options={"idempotency_key": "3ds"},
    )
    assert pi.status == "requires_action"
    assert pi.next_action.type == "redirect_to_url"
    page_url = pi.next_action.redirect_to_url.url
    page = http.get(page_url)
    assert page.status_code == 200
    assert "Complete authentication" in page.text
    done = http.post(page_url, data={"result": "complete"})
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("https://portal.test/pay/return?x=1&payment_intent=" + pi.id)
    assert "redirect_status=succeeded" in location
    after = client.v1.payment_intents.retrieve(pi.id)
    assert (after.status, after.next_action) == ("succeeded", None)


def test_three_d_secure_failure_and_off_session(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(
        params={
            "amount": 5000,
            "currency": "usd",
            "payment_method": "pm_card_authenticationRequired",
            "confirm": True,
        }
    )
    done = http.post(pi.next_action.redirect_to_url.url, data={"result": "fail"})
    assert done.status_code == 200
    assert "Authentication failed" in done.text
    after = client.v1.payment_intents.retrieve(pi.id)
    assert after.status == "requires_payment_method"
    assert after.last_payment_error.code == "payment_intent_authentication_failure"
    customer = client.v1.customers.create()
    with pytest.raises(stripe.CardError) as off:
        client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": "pm_card_authenticationRequired",
                "confirm": True,
                "off_session": True,
            }
        )
    assert off.value.code == "authentication_required"


def test_setup_intent_then_off_session_charge(client: stripe.StripeClient) -> None:
    """A card that needs 3-D Secure once, saved by a SetupIntent, then charged off-session."""
    customer = client.v1.customers.create()
    si = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "confirm": True,
            "usage": "off_session",
        },
        options={"idempotency_key": "seti"},
    )
    assert si.id.startswith("seti_")
    assert si.status == "requires_action"
    http.post(si.next_action.redirect_to_url.url, data={"result": "complete"})
    si = client.v1.setup_intents.retrieve(si.id)
    assert si.status == "succeeded"
    pm = client.v1.payment_methods.retrieve(si.payment_method)
    assert pm.customer == customer.id
    pi = client.v1.payment_intents.create(
        params={
            "amount": 990,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm.id,
            "confirm": True,
            "off_session": True,
        },
        options={"idempotency_key": "autopay"},
    )
    assert pi.status == "succeeded"
    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data]
    assert "setup_intent.succeeded" in types
    assert "payment_method.attached" in types


def test_refunds_partial_full_and_over_refund(client: stripe.StripeClient, url: str) -> None:
    pi = client.v1.payment_intents.create(
        params={
            "amount": 10000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    first = client.v1.refunds.create(
        params={"payment_intent": pi.id, "amount": 2500, "reason": "requested_by_customer"},
        options={"idempotency_key": "refund-1"},
    )
    assert first.id.startswith("re_")
    assert (first.amount, first.status) == (2500, "succeeded")
    txn = client.v1.balance_transactions.retrieve(first.balance_transaction)
    assert (txn.type, txn.amount, txn.net) == ("refund", -2500, -2500)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 7501})
    assert too_much.value.code == "amount_too_large"
    rest = client.v1.refunds.create(params={"payment_intent": pi.id})
    assert rest.amount == 7500
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (10000, True)
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert again.value.code == "charge_already_refunded"
    refunds = client.v1.refunds.list(params={"payment_intent": pi.id})
    assert sorted(r.amount for r in refunds.data) == [2500, 7500]
    assert control(url, "/_test/state")["charges"]["amount_refunded"] == {"usd": 10000}
    refunded_events = client.v1.events.list(params={"type": "charge.refunded"}).data
    assert [e.data.object.amount_refunded for e in refunded_events] == [10000, 2500]


def test_cancel_payment_intent(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_intents.cancel(pi.id)
    assert again.value.code == "payment_intent_unexpected_state"


def test_errors_and_authentication(url: str, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_missing")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create(params={"emial": "typo@acme.test"})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.param == "emial"
    with pytest.raises(stripe.InvalidRequestError) as small:
        client.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert small.value.code == "amount_too_small"
    anonymous = http.get(url + "/v1/customers")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    live = http.get(url + "/v1/customers", headers={"Authorization": "Bearer sk_live_abcdefghij"})
    assert live.status_code == 401
    ok = http.get(url + "/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200
    wrong = stripe.StripeClient(
        "sk_live_nope", base_addresses={"api": url}, http_client=make_client(url)._requestor._client
    )
    with pytest.raises(stripe.AuthenticationError):
        wrong.v1.customers.list()


def test_list_pagination_and_auto_paging(client: stripe.StripeClient) -> None:
    made = [client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(7)]
    page = client.v1.customers.list(params={"limit": 3})
    assert page.has_more
    assert page.url == "/v1/customers"
    assert [c.id for c in page.data] == made[::-1][:3]
    second = client.v1.customers.list(params={"limit": 3, "starting_after": page.data[-1].id})
    assert [c.id for c in second.data] == made[::-1][3:6]
    assert [c.id for c in page.auto_paging_iter()] == made[::-1]


def test_events_carry_object_state_and_request(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(
        params={
            "amount": 1500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        },
        options={"idempotency_key": "evt-key"},
    )
    events = client.v1.events.list(params={"type": "payment_intent.succeeded"}).data
    assert len(events) == 1
    event = client.v1.events.retrieve(events[0].id)
    assert event.id.startswith("evt_")
    assert event.type == "payment_intent.succeeded"
    assert event.data.object.id == pi.id
    assert event.data.object.status == "succeeded"
    assert event.request.idempotency_key == "evt-key"
    created = client.v1.events.list(params={"type": "payment_intent.created"}).data[0]
    assert created.data.object.status == "requires_confirmation"
