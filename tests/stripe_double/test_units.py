"""Pure pieces of the double: form parsing, signing, cards, fees, idempotency records."""

from __future__ import annotations

import pytest
import stripe

from stripe_double import cards, money
from stripe_double.errors import StripeError
from stripe_double.forms import FormError, parse_form
from stripe_double.idempotency import IdempotencyStore, SavedResponse
from stripe_double.params import metadata
from stripe_double.signing import signature_header


def test_bracket_notation() -> None:
    raw = (
        "metadata[order]=1&line_items[0][price_data][currency]=usd"
        "&line_items[0][quantity]=2&line_items[1][quantity]=3"
        "&expand[]=a&expand[]=b.c&description=a+b%26c&empty="
    )
    assert parse_form(raw) == {
        "metadata": {"order": "1"},
        "line_items": [{"price_data": {"currency": "usd"}, "quantity": "2"}, {"quantity": "3"}],
        "expand": ["a", "b.c"],
        "description": "a b&c",
        "empty": "",
    }
    assert parse_form("items[10]=b&items[2]=a") == {"items": ["a", "b"]}
    with pytest.raises(FormError):
        parse_form("a[b=1")


def test_signature_matches_the_sdk() -> None:
    payload = b'{"id": "evt_1", "object": "event"}'
    header = signature_header(payload, "whsec_abc", 1_700_000_000)
    expected = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), "whsec_abc", timestamp=1_700_000_000
    )
    assert header == expected


def test_metadata_semantics() -> None:
    assert metadata({"a": "1", "b": "2"}, {"c": "3"}) == {"a": "1", "b": "2", "c": "3"}
    assert metadata({"c": ""}, {"c": "3", "d": "4"}) == {"d": "4"}
    assert metadata("", {"c": "3"}) == {}
    with pytest.raises(StripeError):
        metadata({"k" * 41: "v"})


def test_cards_and_fees() -> None:
    assert cards.from_number("4242 4242 4242 4242").behaviour == cards.SUCCEED
    assert cards.from_token("pm_card_chargeDeclined").decline.decline_code == "generic_decline"  # type: ignore[union-attr]
    assert cards.from_token("tok_visa") is cards.from_number("4242424242424242")
    with pytest.raises(StripeError) as live:
        cards.from_number("4111111111111111")
    assert live.value.decline_code == "test_mode_live_card"
    assert money.processing_fee(10000) == 320
    assert money.processing_fee(0) == 30
    assert money.format_amount(1234, "kwd") == "1.234"
    assert money.format_amount(1234, "jpy") == "1234"


def test_idempotency_store_records() -> None:
    store = IdempotencyStore()
    first = store.begin("sk", "k", "POST", "/v1/customers", {"a": "1"}, 0.0, "req_1")
    assert first.response is None
    with pytest.raises(StripeError) as busy:
        store.begin("sk", "k", "POST", "/v1/customers", {"a": "1"}, 1.0, "req_2")
    assert (busy.value.status, busy.value.code) == (409, "idempotency_key_in_use")
    store.finish("sk", "k", SavedResponse(200, b"{}", "req_1"))
    replay = store.begin("sk", "k", "POST", "/v1/customers", {"a": "1"}, 2.0, "req_3")
    assert replay.response is not None
    assert replay.response.request_id == "req_1"
    assert store.begin("other", "k", "POST", "/v1/customers", {}, 2.0, "r").response is None
    with pytest.raises(StripeError) as mismatch:
        store.begin("sk", "k", "POST", "/v1/customers", {"a": "2"}, 3.0, "req_4")
    assert (mismatch.value.status, mismatch.value.type) == (400, "idempotency_error")
    later = store.begin("sk", "k", "POST", "/v1/customers", {"a": "2"}, 86_400.0, "req_5")
    assert later.response is None
