"""The wallet pages over HTTP on the demo data: payment history (filters, htmx fragment,
paging, CSV export audited), receipts scoped to the user, and who may manage methods
and autopay."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from core.audit.tables import AuditEvent
from core.identity.roles import CustomerRole
from core.identity.services import (
    create_billing_account,
    create_organization,
    create_user,
    grant_role,
)
from core.identity.tables import BillingAccount, CustomerOrganization, IssuingEntity
from core.payments.tables import Payment
from core.wallet.rules import MANDATE_VERSION
from portal.auth import requires_customer_action, requires_own_session
from portal.wallet.pages import WalletController
from tests.helpers import csrf_from, login
from tests.integration.factories import SYSTEM

PW = "wallet-http-password-1"

HTMX = {"HX-Request": "true", "HX-Target": "payment-results"}


async def client_for(live_server, email: str, password: str | None = None) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=live_server.url, timeout=15)
    await (login(client, email, password) if password else login(client, email))
    return client


@pytest.fixture
async def bob(live_server) -> AsyncIterator[httpx.AsyncClient]:
    client = await client_for(live_server, "bob@globex.example")
    yield client
    await client.aclose()


@pytest.fixture
async def vera(live_server) -> AsyncIterator[httpx.AsyncClient]:
    client = await client_for(live_server, "vera@globex.example")
    yield client
    await client.aclose()


def shown_total(html: str) -> int:
    match = re.search(r"of (\d+) payments?", html)
    if match is None:
        assert "No payments match these filters." in html
        return 0
    return int(match.group(1))


async def group_payments(root_name: str) -> list[dict]:
    root = await CustomerOrganization.select().where(CustomerOrganization.name == root_name).first()
    nodes = await CustomerOrganization.select(CustomerOrganization.id).where(
        CustomerOrganization.path.like(root["path"] + "%")
    )
    accounts = await BillingAccount.select(BillingAccount.id).where(
        BillingAccount.organization.is_in([n["id"] for n in nodes])
    )
    return await Payment.select().where(
        Payment.billing_account.is_in([a["id"] for a in accounts] or [-1])
    )


async def test_history_lists_filters_pages_and_exports(bob, demo_db) -> None:
    page = await bob.get("/wallet/payments")
    assert page.status_code == 200
    total = shown_total(page.text)
    assert total > 0
    assert "Payment history" in page.text

    # htmx: only the results fragment, with the live region out of band
    fragment = await bob.get("/wallet/payments", params={"per_page": 10}, headers=HTMX)
    assert "<h1>" not in fragment.text
    assert 'hx-swap-oob="true"' in fragment.text
    assert fragment.text.count('data-testid="receipt-link"') == min(10, total)

    # filters narrow, are validated and reported, never a 500
    card = shown_total((await bob.get("/wallet/payments", params={"method": "card"})).text)
    transfer = shown_total(
        (await bob.get("/wallet/payments", params={"method": "bank_transfer"})).text
    )
    assert card + transfer <= total
    bad = await bob.get(
        "/wallet/payments",
        params={"from": "2026-06-01", "to": "2026-01-01", "method": "gold", "page": "x"},
    )
    assert bad.status_code == 200
    assert "The end date must not be before the start date." in bad.text
    assert "Choose a payment method from the list." in bad.text
    future = await bob.get("/wallet/payments", params={"from": "2999-01-01"})
    assert shown_total(future.text) == 0

    before = await AuditEvent.count().where(AuditEvent.action == "payments.exported")
    export = await bob.get("/wallet/payments/export.csv", params={"method": "bank_transfer"})
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == transfer
    assert all(r["method"] == "Bank transfer" for r in rows)
    assert await AuditEvent.count().where(AuditEvent.action == "payments.exported") == before + 1


async def test_receipts_are_scoped(bob, vera, demo_db) -> None:
    page = await bob.get("/wallet/payments", params={"per_page": 10})
    receipt_ids = re.findall(r'href="/wallet/receipts/(\d+)"', page.text)
    assert receipt_ids
    receipt = await bob.get(f"/wallet/receipts/{receipt_ids[0]}")
    assert receipt.status_code == 200
    assert "Receipt R-" in receipt.text
    assert "Invoices paid" in receipt.text
    # Vera sees Globex Europe only: Bob's North America payment is not there for her.
    assert (await vera.get(f"/wallet/receipts/{receipt_ids[0]}")).status_code == 404
    initech = await group_payments("Initech Group")
    assert initech
    assert (await bob.get(f"/wallet/receipts/{initech[0]['id']}")).status_code == 404
    for odd in ("0", str(2**31), str(10**20)):
        assert (await bob.get(f"/wallet/receipts/{odd}")).status_code == 404
    foreign_account = initech[0]["billing_account"]
    assert (
        await bob.get("/wallet/payments", params={"account": foreign_account})
    ).status_code == 404


async def test_viewer_cannot_manage_methods_or_autopay(vera, demo_db) -> None:
    methods = await vera.get("/wallet/methods")
    assert methods.status_code == 200
    assert 'data-testid="add-method"' not in methods.text
    assert "needs the payer role" in methods.text
    csrf = csrf_from(methods.text)
    refused = await vera.post("/wallet/methods/add", data={"_csrf_token": csrf})
    assert refused.status_code == 403
    autopay = await vera.get("/wallet/autopay")
    assert autopay.status_code == 200
    assert 'data-testid="enroll"' not in autopay.text
    account = re.search(r'id="account-(\d+)"', autopay.text)
    assert account
    enroll = await vera.post(
        f"/wallet/autopay/{account.group(1)}/enroll",
        data={"_csrf_token": csrf, "method": "1", "agree": "yes", "mandate_version": "x"},
    )
    assert enroll.status_code == 403


@dataclass
class Group:
    payer: str
    viewer: str
    account: int


async def http_group(demo_db) -> Group:
    """A customer group of this test's own in the demo database (unique names)."""
    tag = uuid.uuid4().hex[:8]
    entity = await IssuingEntity.select(IssuingEntity.id).where(IssuingEntity.code == "US").first()
    org = await create_organization(name=f"Wallet HTTP {tag}")
    account = await create_billing_account(
        code=f"WHTTP-{tag}",
        name=f"HTTP account {tag}",
        organization_id=org,
        issuing_entity_id=entity["id"],
        currency_code="USD",
    )
    emails = []
    for role in (CustomerRole.PAYER, CustomerRole.VIEWER):
        email = f"{role.value}-{tag}@wallet-http.example"
        user = await create_user(email=email, name=role.value, organization_id=org, password=PW)
        await grant_role(user, org, role, SYSTEM)
        emails.append(email)
    return Group(emails[0], emails[1], account)


async def add_card_over_http(client: httpx.AsyncClient, number: str) -> httpx.Response:
    page = await client.get("/wallet/methods")
    cont = await client.post("/wallet/methods/add", data={"_csrf_token": csrf_from(page.text)})
    assert cont.status_code == 200
    hosted = re.search(r'href="([^"]+/_hosted/checkout/cs_test_[^"]+)"', cont.text)
    assert hosted, "no link to Stripe's page"
    async with httpx.AsyncClient(timeout=15, trust_env=False) as stripe_page:
        done = await stripe_page.post(
            hosted.group(1),
            data={"card_number": number, "card_expiry": "12 / 34", "card_cvc": "123"},
        )
    assert done.status_code == 303
    back = done.headers["location"]
    return await client.get(back.removeprefix(str(client.base_url)))


async def test_payer_manages_methods_viewer_and_other_tenants_cannot(live_server, demo_db) -> None:
    group = await http_group(demo_db)
    payer = await client_for(live_server, group.payer, PW)
    viewer = await client_for(live_server, group.viewer, PW)
    outsider = await client_for(live_server, "bob@globex.example")
    try:
        added = await add_card_over_http(payer, "4242424242424242")
        assert added.status_code == 303
        assert added.headers["location"] == "/wallet/methods?notice=added"
        await add_card_over_http(payer, "5555555555554444")
        page = await payer.get("/wallet/methods")
        assert "Payment method saved." not in page.text
        ids = [int(i) for i in re.findall(r'action="/wallet/methods/(\d+)/remove"', page.text)]
        assert len(ids) == 2
        assert "Visa ending 4242" in page.text
        assert "Mastercard ending 4444" in page.text
        csrf = csrf_from(page.text)

        # viewer: sees the methods, may not change them; an outsider gets 404
        seen = await viewer.get("/wallet/methods")
        assert "Visa ending 4242" in seen.text
        assert "/remove" not in seen.text
        viewer_csrf = csrf_from(seen.text)
        for path in (f"/wallet/methods/{ids[1]}/default", f"/wallet/methods/{ids[0]}/remove"):
            refused = await viewer.post(path, data={"_csrf_token": viewer_csrf})
            assert refused.status_code == 403
            outsider_csrf = csrf_from((await outsider.get("/wallet/methods")).text)
            hidden = await outsider.post(path, data={"_csrf_token": outsider_csrf})
            assert hidden.status_code == 404

        # autopay: a bad submission is re-rendered with the field's error, nothing saved
        bad = await payer.post(
            f"/wallet/autopay/{group.account}/enroll",
            data={"_csrf_token": csrf, "method": str(ids[0]), "mandate_version": "x"},
        )
        assert bad.status_code == 422
        assert "The mandate text has changed" in bad.text
        on = await payer.post(
            f"/wallet/autopay/{group.account}/enroll",
            data={
                "_csrf_token": csrf,
                "method": str(ids[0]),
                "agree": "yes",
                "mandate_version": MANDATE_VERSION,
            },
        )
        assert on.status_code == 303
        # the method autopay uses cannot be removed; the message says why
        blocked = await payer.post(f"/wallet/methods/{ids[0]}/remove", data={"_csrf_token": csrf})
        assert blocked.status_code == 409
        assert "uses this method" in blocked.text
        made = await payer.post(f"/wallet/methods/{ids[1]}/default", data={"_csrf_token": csrf})
        assert made.headers["location"] == "/wallet/methods?notice=default"
        off = await payer.post(
            f"/wallet/autopay/{group.account}/disenroll", data={"_csrf_token": csrf}
        )
        assert off.headers["location"] == "/wallet/autopay?notice=disenrolled"
        gone = await payer.post(f"/wallet/methods/{ids[0]}/remove", data={"_csrf_token": csrf})
        assert gone.headers["location"] == "/wallet/methods?notice=removed"
        final = await payer.get("/wallet/methods")
        assert "Visa ending 4242" not in final.text
        assert final.text.count('data-testid="default-badge"') == 1
    finally:
        for client in (payer, viewer, outsider):
            await client.aclose()


def test_changes_are_refused_in_view_only_sessions_and_secrets_need_the_customer() -> None:
    """Every wallet POST refuses view-only assisted sessions; adding a card (Stripe's
    page) and accepting a mandate refuse every assisted session."""
    handlers = {
        h.handler_name: h
        for h in WalletController.get_route_handlers(WalletController(owner=None))  # type: ignore[arg-type]
        if "POST" in h.http_methods
    }
    assert set(handlers) == {
        "add_method",
        "remove_method",
        "default_method",
        "enroll",
        "disenroll",
    }
    for name, handler in handlers.items():
        guards = handler.guards or []
        assert requires_customer_action in guards, name
        own = requires_own_session in guards
        assert own == (name in ("add_method", "enroll")), name
