"""Saved payment methods against PostgreSQL and the Stripe double (real SDK): the group's
Stripe customer created once, a card added through Checkout in setup mode (the double's
hosted page), recorded once whether the return page or the webhook comes first, removed
(detached at Stripe, kept here) unless autopay uses it, and the default moved.

Other wallet test modules import ``wallet_world`` / ``Wallet`` / ``save_card`` from here."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace

import pytest
import requests

from core.audit.log import Actor
from core.audit.tables import AuditEvent
from core.errors import NotFound, ValidationFailed
from core.identity.roles import CustomerRole
from core.identity.scope import Scope, load_scope
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_user,
    grant_role,
)
from core.invoicing.services import create_draft, finalize
from core.payments import gateway, webhooks
from core.wallet import autopay, methods
from core.wallet.rules import MANDATE_VERSION
from core.wallet.stripe_events import HANDLERS
from core.wallet.tables import SavedPaymentMethod, StripeCustomer
from tests.conftest import STRIPE_TEST_KEY, STRIPE_TEST_WEBHOOK_SECRET
from tests.integration.factories import SYSTEM, lines

BASE = "http://portal.test"
CARD_FORM = {"card_expiry": "12 / 34", "card_cvc": "123", "name": "Pat Payer"}
_http = requests.Session()
_http.trust_env = False


def control(url: str, path: str, payload: dict | None = None) -> dict:
    if payload is None and path.startswith("/_test/state"):
        response = _http.get(url + path, timeout=30)
    else:
        response = _http.post(url + path, json=payload or {}, timeout=30)
    response.raise_for_status()
    return response.json()


@dataclass
class Wallet:
    root: int
    usd: int  # billing account (USD, 14-day terms)
    eur: int  # billing account (EUR) of the same group
    payer: int
    viewer: int
    other_root: int
    stripe_url: str

    async def scope(self, user: int | None = None) -> Scope:
        return await load_scope(user or self.payer)

    def actor(self, user: int | None = None) -> Actor:
        return Actor(type="customer", id=str(user or self.payer), ip="203.0.113.9")


async def finalized_invoice(account: int, amount: str, issued: date) -> int:
    inv = await create_draft(account, lines(amount, rate="0"), SYSTEM)
    await finalize(inv, SYSTEM, issue_date=issued)
    return inv


@pytest.fixture
async def wallet_world(db, stripe_double) -> Wallet:
    control(stripe_double.url, "/_test/reset")  # our ids restart with the emptied db
    gateway.configure(
        SimpleNamespace(
            stripe_api_key=STRIPE_TEST_KEY,
            stripe_api_base=stripe_double.url,
            stripe_webhook_secret=STRIPE_TEST_WEBHOOK_SECRET,
            base_url=BASE,
        )
    )
    us = await create_issuing_entity(
        code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
    )
    de = await create_issuing_entity(
        code="DE", name="Acme", legal_name="Acme GmbH", country="DE", functional_currency="EUR"
    )
    root = await create_organization(name="Wallet Group")
    usd = await create_billing_account(
        code="WAL-US",
        name="Wallet US",
        organization_id=root,
        issuing_entity_id=us,
        currency_code="USD",
        payment_terms_days=14,
    )
    eur = await create_billing_account(
        code="WAL-EU",
        name="Wallet EU",
        organization_id=root,
        issuing_entity_id=de,
        currency_code="EUR",
        payment_terms_days=14,
    )
    payer = await create_user(
        email="payer@wallet.example", name="Pat Payer", organization_id=root, password="x" * 16
    )
    await grant_role(payer, root, CustomerRole.PAYER, SYSTEM)
    viewer = await create_user(
        email="viewer@wallet.example", name="Vic Viewer", organization_id=root, password="x" * 16
    )
    await grant_role(viewer, root, CustomerRole.VIEWER, SYSTEM)
    other_root = await create_organization(name="Other Group")
    return Wallet(root, usd, eur, payer, viewer, other_root, stripe_double.url)


async def save_card(w: Wallet, number: str = "4242424242424242") -> methods.SavedMethod:
    """Add a card the way a customer does: Checkout in setup mode, the double's hosted
    card page, then our return page's call."""
    url = await methods.start_setup(
        root_org_id=w.root, user_id=w.payer, base_url=BASE, actor=w.actor()
    )
    done = _http.post(url, data={"card_number": number, **CARD_FORM}, allow_redirects=False)
    assert done.status_code == 303, done.text[:300]
    location = done.headers["location"]
    assert location.startswith(f"{BASE}/wallet/methods/added?session_id=cs_test_")
    session_id = location.split("session_id=")[1]
    saved = await methods.complete_setup_session(session_id, root_org_id=w.root)
    assert saved is not None
    return saved


async def test_stripe_customer_is_created_once_per_group(wallet_world: Wallet) -> None:
    w = wallet_world
    ids = await asyncio.gather(*(methods.ensure_stripe_customer(w.root) for _ in range(5)))
    assert len(set(ids)) == 1
    assert await StripeCustomer.count() == 1
    state = control(w.stripe_url, "/_test/state")
    assert state["objects"]["customer"] == 1


async def test_card_added_through_checkout_is_recorded_once(wallet_world: Wallet) -> None:
    w = wallet_world
    saved = await save_card(w)
    assert (saved.brand, saved.last4, saved.exp_month, saved.exp_year) == ("visa", "4242", 12, 2034)
    assert saved.is_default  # the first method becomes the default
    assert saved.stripe_payment_method.startswith("pm_")
    # The webhooks (setup_intent.succeeded, checkout.session.completed), delivered
    # twice each, in any order, change nothing more.
    events = _http.get(f"{w.stripe_url}/v1/events", headers=_auth(), timeout=30).json()["data"]
    relevant = [e for e in events if e["type"] in HANDLERS]
    assert {e["type"] for e in relevant} == set(HANDLERS)
    for event in relevant + list(reversed(relevant)):
        await HANDLERS[event["type"]](event["type"], event["data"]["object"])
    assert await SavedPaymentMethod.count() == 1
    assert await AuditEvent.count().where(AuditEvent.action == "payment_method.saved") == 1
    second = await save_card(w, "5555555555554444")
    listed = await methods.saved_methods(w.root)
    assert [m.id for m in listed] == [saved.id, second.id]
    assert [m.is_default for m in listed] == [True, False]
    assert listed[1].label == "Mastercard ending 4444"


async def test_webhook_alone_records_the_card(wallet_world: Wallet) -> None:
    """The customer closes the tab after Stripe's page: the webhook still records it."""
    w = wallet_world
    url = await methods.start_setup(
        root_org_id=w.root, user_id=w.payer, base_url=BASE, actor=w.actor()
    )
    done = _http.post(
        url, data={"card_number": "4242424242424242", **CARD_FORM}, allow_redirects=False
    )
    assert done.status_code == 303  # ...and the customer never comes back
    events = _http.get(
        f"{w.stripe_url}/v1/events",
        params={"type": "setup_intent.succeeded"},
        headers=_auth(),
        timeout=30,
    ).json()["data"]
    assert len(events) == 1
    await HANDLERS["setup_intent.succeeded"]("setup_intent.succeeded", events[0]["data"]["object"])
    assert [m.last4 for m in await methods.saved_methods(w.root)] == ["4242"]


async def test_declined_card_is_not_saved_and_foreign_sessions_are_not_found(
    wallet_world: Wallet,
) -> None:
    w = wallet_world
    url = await methods.start_setup(
        root_org_id=w.root, user_id=w.payer, base_url=BASE, actor=w.actor()
    )
    declined = _http.post(url, data={"card_number": "4000000000000002", **CARD_FORM})
    assert declined.status_code == 402
    session_id = url.rsplit("/", 1)[1]
    assert await methods.complete_setup_session(session_id, root_org_id=w.root) is None
    assert await SavedPaymentMethod.count() == 0
    # Another group cannot claim this group's session; made-up ids are not found either.
    await methods.ensure_stripe_customer(w.other_root)
    with pytest.raises(NotFound):
        await methods.complete_setup_session(session_id, root_org_id=w.other_root)
    for bad in ("cs_test_nope", "pi_123", "x" * 300):
        with pytest.raises(NotFound):
            await methods.complete_setup_session(bad, root_org_id=w.root)


async def test_remove_refused_while_autopay_uses_it_then_detached(wallet_world: Wallet) -> None:
    w = wallet_world
    first = await save_card(w)
    second = await save_card(w, "5555555555554444")
    scope = await w.scope()
    await autopay.enroll(
        scope,
        billing_account_id=w.usd,
        method_raw=str(first.id),
        agreed=True,
        mandate_version=MANDATE_VERSION,
        ip="203.0.113.9",
        actor=w.actor(),
    )
    with pytest.raises(ValidationFailed) as refused:
        await methods.remove_method(root_org_id=w.root, method_id=first.id, actor=w.actor())
    assert "Autopay for Wallet US uses this method" in refused.value.errors["method"]
    assert len(await methods.saved_methods(w.root)) == 2

    # Switch autopay to the second card; the first can go, the second becomes default.
    await autopay.enroll(
        scope,
        billing_account_id=w.usd,
        method_raw=str(second.id),
        agreed=True,
        mandate_version=MANDATE_VERSION,
        ip="203.0.113.9",
        actor=w.actor(),
    )
    await methods.remove_method(root_org_id=w.root, method_id=first.id, actor=w.actor())
    left = await methods.saved_methods(w.root)
    assert [(m.id, m.is_default) for m in left] == [(second.id, True)]
    row = await SavedPaymentMethod.select().where(SavedPaymentMethod.id == first.id).first()
    assert row["removed_at"] is not None  # kept, marked removed
    pm = gateway.stripe_client().v1.payment_methods.retrieve(first.stripe_payment_method)
    assert pm.customer is None  # detached at Stripe
    with pytest.raises(NotFound):  # removing twice: gone
        await methods.remove_method(root_org_id=w.root, method_id=first.id, actor=w.actor())
    with pytest.raises(NotFound):  # another group's id
        await methods.set_default(root_org_id=w.other_root, method_id=second.id, actor=SYSTEM)


async def test_set_default_moves_the_single_default(wallet_world: Wallet) -> None:
    w = wallet_world
    first = await save_card(w)
    second = await save_card(w, "5555555555554444")
    await asyncio.gather(
        methods.set_default(root_org_id=w.root, method_id=second.id, actor=w.actor()),
        methods.set_default(root_org_id=w.root, method_id=first.id, actor=w.actor()),
        methods.set_default(root_org_id=w.root, method_id=second.id, actor=w.actor()),
    )
    defaults = [m for m in await methods.saved_methods(w.root) if m.is_default]
    assert len(defaults) == 1
    assert await AuditEvent.count().where(AuditEvent.action == "payment_method.default_set") >= 1


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {STRIPE_TEST_KEY}"}


def signed(payload: bytes, secret: str = STRIPE_TEST_WEBHOOK_SECRET) -> str:
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


async def test_signed_webhooks_through_the_dispatcher_save_the_card_once(
    wallet_world: Wallet,
) -> None:
    """The customer never comes back from Stripe's page; the signed webhooks, each
    delivered twice and in reverse order, go through core.payments' dispatcher (one
    transaction per event) and save the card exactly once."""
    w = wallet_world
    url = await methods.start_setup(
        root_org_id=w.root, user_id=w.payer, base_url=BASE, actor=w.actor()
    )
    _http.post(url, data={"card_number": "4242424242424242", **CARD_FORM}, allow_redirects=False)
    events = _http.get(f"{w.stripe_url}/v1/events", headers=_auth(), timeout=30).json()["data"]
    payloads = [
        json.dumps(e).encode()
        for e in events
        if e["type"] in ("setup_intent.succeeded", "checkout.session.completed")
    ]
    assert len(payloads) == 2
    outcomes = [await webhooks.receive(p, signed(p)) for p in reversed(payloads + payloads)]
    assert sorted(outcomes) == ["duplicate", "duplicate", "processed", "processed"]
    with pytest.raises(webhooks.InvalidWebhook):
        await webhooks.receive(payloads[0], signed(payloads[0], "whsec_forged"))
    [saved] = await methods.saved_methods(w.root)
    assert (saved.last4, saved.is_default) == ("4242", True)
    assert await AuditEvent.count().where(AuditEvent.action == "payment_method.saved") == 1
