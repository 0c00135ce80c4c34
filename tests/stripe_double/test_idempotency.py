"""Stripe's idempotency semantics: replay, mismatch, in-flight conflict, 24 h expiry."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import stripe

from tests.stripe_double.support import API_KEY, control, http, make_client

CHARGE = {"amount": 4200, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_same_key_replays_identical_response(url: str) -> None:
    headers = {**AUTH, "Idempotency-Key": "attempt-1"}
    first = http.post(url + "/v1/payment_intents", data=CHARGE, headers=headers)
    second = http.post(url + "/v1/payment_intents", data=CHARGE, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["original-request"] == first.headers["request-id"]
    state = control(url, "/_test/state")
    assert state["succeeded_charges_by_idempotency_key"] == {"attempt-1": 1}
    assert state["idempotency_keys"]["attempt-1"]["replays"] == 1


def test_sdk_replay_and_declines_are_replayed_too(client: stripe.StripeClient, url: str) -> None:
    params = {"amount": 4200, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k"})  # type: ignore[arg-type]
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k"})  # type: ignore[arg-type]
    assert again.id == first.id
    assert again.last_response.headers["idempotent-replayed"] == "true"
    declined = {**params, "payment_method": "pm_card_chargeDeclined"}
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as exc:
            client.v1.payment_intents.create(params=declined, options={"idempotency_key": "d"})  # type: ignore[arg-type]
        errors.append(exc.value)
    assert errors[0].http_body == errors[1].http_body
    assert control(url, "/_test/state")["charges"]["failed"] == 1


def test_same_key_other_params_is_an_idempotency_error(client: stripe.StripeClient) -> None:
    client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "same"})
    with pytest.raises(stripe.IdempotencyError) as mismatch:
        client.v1.customers.create(params={"name": "B"}, options={"idempotency_key": "same"})
    assert mismatch.value.http_status == 400
    assert mismatch.value.error.type == "idempotency_error"
    with pytest.raises(stripe.IdempotencyError):  # another endpoint, same key
        client.v1.payment_intents.create(
            params={"amount": 100, "currency": "usd"}, options={"idempotency_key": "same"}
        )


def test_validation_errors_are_not_saved(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create(
            params={"amount": 100, "currency": "zzz"}, options={"idempotency_key": "fix-me"}
        )
    fixed = client.v1.payment_intents.create(
        params={"amount": 100, "currency": "usd"}, options={"idempotency_key": "fix-me"}
    )
    assert fixed.status == "requires_payment_method"


def test_twenty_concurrent_requests_one_key_charge_once(url: str) -> None:
    control(url, "/_test/config", {"latency": 0.3})
    params = {
        "amount": 9900,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "metadata": {"attempt": "att_42"},
    }

    def pay(_: int) -> str:
        client = make_client(url, retries=8)  # the SDK retries 409s with back-off
        pi = client.v1.payment_intents.create(params=params, options={"idempotency_key": "att_42"})  # type: ignore[arg-type]
        return pi.id

    with ThreadPoolExecutor(max_workers=20) as pool:
        ids = list(pool.map(pay, range(20)))
    assert len(set(ids)) == 1
    state = control(url, "/_test/state")
    assert state["charges"]["succeeded"] == 1
    assert state["succeeded_charges_by_idempotency_key"] == {"att_42": 1}
    assert state["succeeded_charges_by_payment_intent"] == {ids[0]: 1}
    stats = state["idempotency_keys"]["att_42"]
    assert stats["executions"] == 1
    assert stats["conflicts"] >= 1  # others arrived while the first was in flight


async def test_in_flight_key_gets_409(url: str) -> None:
    control(url, "/_test/config", {"latency": 0.3})
    headers = {**AUTH, "Idempotency-Key": "in-flight"}
    async with httpx.AsyncClient(base_url=url, trust_env=False) as aclient:
        responses = await asyncio.gather(
            *(aclient.post("/v1/payment_intents", data=CHARGE, headers=headers) for _ in range(20))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(200) >= 1
        assert statuses.count(409) >= 1
        assert set(statuses) <= {200, 409}
        conflict = next(r for r in responses if r.status_code == 409).json()["error"]
        assert (conflict["type"], conflict["code"]) == (
            "idempotency_error",
            "idempotency_key_in_use",
        )
        later = await aclient.post("/v1/payment_intents", data=CHARGE, headers=headers)
    assert later.headers["idempotent-replayed"] == "true"
    assert control(url, "/_test/state")["charges"]["succeeded"] == 1


def test_keys_expire_after_24_hours(client: stripe.StripeClient, url: str) -> None:
    first = client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "old"})
    control(url, "/_test/clock", {"advance": 23 * 3600})
    assert (
        client.v1.customers.create(params={"name": "A"}, options={"idempotency_key": "old"}).id
        == first.id
    )
    control(url, "/_test/clock", {"advance": 3600})
    fresh = client.v1.customers.create(params={"name": "B"}, options={"idempotency_key": "old"})
    assert fresh.id != first.id
