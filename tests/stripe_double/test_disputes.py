"""Disputes: opened by the test control, evidence, outcomes, events, balance."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_double.support import Receiver, control


def _charge(client: stripe.StripeClient, card: str = "pm_card_visa") -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={"amount": 8000, "currency": "usd", "payment_method": card, "confirm": True}
    )


def test_open_dispute_emits_event_and_withdraws_funds(
    client: stripe.StripeClient, url: str, receiver: Receiver
) -> None:
    pi = _charge(client)
    dispute = control(url, "/_test/disputes", {"charge": pi.latest_charge, "reason": "fraudulent"})
    assert dispute["id"].startswith("dp_")
    assert dispute["status"] == "needs_response"
    assert (dispute["amount"], dispute["payment_intent"]) == (8000, pi.id)
    withdrawal = dispute["balance_transactions"][0]
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["net"]) == (-8000, 1500, -9500)
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True
    control(url, "/_test/webhooks/flush")
    created = receiver.events("charge.dispute.created")
    assert [e.data.object.id for e in created] == [dispute["id"]]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert refused.value.code == "charge_disputed"


def test_evidence_and_outcomes(client: stripe.StripeClient, url: str) -> None:
    won = control(url, "/_test/disputes", {"payment_intent": _charge(client).id})
    staged = client.v1.disputes.update(
        won["id"],
        params={"evidence": {"customer_name": "Acme GmbH"}, "submit": False},
        options={"idempotency_key": "stage"},
    )
    assert staged.status == "needs_response"
    assert staged.evidence_details.has_evidence
    submitted = client.v1.disputes.update(
        won["id"], params={"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    assert submitted.status == "won"
    assert [t.reporting_category for t in submitted.balance_transactions] == [
        "dispute",
        "dispute_reversal",
    ]
    lost = control(url, "/_test/disputes", {"payment_intent": _charge(client).id})
    closed = client.v1.disputes.close(lost["id"])
    assert closed.status == "lost"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.close(lost["id"])
    decided = control(url, "/_test/disputes", {"payment_intent": _charge(client).id})
    assert (
        control(url, f"/_test/disputes/{decided['id']}/close", {"outcome": "won"})["status"]
        == "won"
    )
    closed_events = client.v1.events.list(params={"type": "charge.dispute.closed"}).data
    assert sorted(e.data.object.status for e in closed_events) == ["lost", "won", "won"]
    assert len(client.v1.disputes.list().data) == 3


def test_dispute_card_is_disputed_automatically(client: stripe.StripeClient) -> None:
    pi = _charge(client, "pm_card_createDispute")
    disputes = client.v1.disputes.list(params={"payment_intent": pi.id}).data
    assert [(d.reason, d.status) for d in disputes] == [("fraudulent", "needs_response")]
