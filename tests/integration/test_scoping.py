"""Authorization by construction: a customer sees only their scope; anything else is 404,
whether asked for by id, through list filters, in the CSV export or on the JSON API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from core.identity.tables import BillingAccount, CustomerOrganization
from core.invoicing.tables import Invoice
from tests.helpers import login


@pytest.fixture
async def client(live_server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as c:
        yield c


async def _ids_of_group(root_name: str) -> tuple[list[int], list[int], list[int]]:
    root = (
        await CustomerOrganization.select(CustomerOrganization.path)
        .where(CustomerOrganization.name == root_name)
        .first()
    )
    nodes = [
        r["id"]
        for r in await CustomerOrganization.select(CustomerOrganization.id).where(
            CustomerOrganization.path.like(root["path"] + "%")
        )
    ]
    accounts = [
        r["id"]
        for r in await BillingAccount.select(BillingAccount.id).where(
            BillingAccount.organization.is_in(nodes)
        )
    ]
    invoices = [
        r["id"]
        for r in await Invoice.select(Invoice.id).where(Invoice.billing_account.is_in(accounts))
    ]
    return nodes, accounts, invoices


async def test_other_tenant_is_not_found_everywhere(demo_db, client) -> None:
    nodes, accounts, invoices = await _ids_of_group("Initech Group")
    assert invoices, "the demo data must give Initech invoices"
    await login(client, "alice@globex.example")  # admin of the whole Globex group

    own = await client.get("/api/v1/invoices", params={"per_page": 100})
    assert own.status_code == 200
    assert own.json()["total"] > 0
    assert not {item["id"] for item in own.json()["items"]} & set(invoices)

    for invoice_id in invoices:
        assert (await client.get(f"/invoices/{invoice_id}")).status_code == 404
        assert (await client.get(f"/api/v1/invoices/{invoice_id}")).status_code == 404
    for account_id in accounts:
        for path in ("/invoices", "/invoices/export.csv", "/api/v1/invoices"):
            response = await client.get(path, params={"account": account_id})
            assert response.status_code == 404, (path, account_id)
    for node_id in nodes:
        for path in ("/invoices", "/invoices/export.csv", "/api/v1/invoices"):
            response = await client.get(path, params={"org": node_id})
            assert response.status_code == 404, (path, node_id)


async def test_subsidiary_user_cannot_see_sibling_subsidiary(demo_db, client) -> None:
    _, _, sibling_invoices = await _ids_of_group("Globex Holdings")
    na = (
        await CustomerOrganization.select(CustomerOrganization.id)
        .where(CustomerOrganization.name == "Globex North America LLC")
        .first()
    )
    na_accounts = [
        r["id"]
        for r in await BillingAccount.select(BillingAccount.id).where(
            BillingAccount.organization == na["id"]
        )
    ]
    na_invoices = {
        r["id"]
        for r in await Invoice.select(Invoice.id).where(
            Invoice.billing_account.is_in(na_accounts) & (Invoice.status != "draft")
        )
    }
    await login(client, "vera@globex.example")  # viewer at Globex Europe GmbH only
    export = await client.get("/invoices/export.csv")
    assert export.status_code == 200
    assert "Globex North America LLC" not in export.text
    assert "Globex Europe GmbH" in export.text
    for invoice_id in sorted(na_invoices)[:20]:
        assert (await client.get(f"/invoices/{invoice_id}")).status_code == 404
    assert (await client.get("/invoices", params={"org": na["id"]})).status_code == 404
    assert set(sibling_invoices) > na_invoices  # sanity: the sibling's invoices exist


async def test_pages_need_a_session(live_server, client) -> None:
    for path in ("/", "/invoices", "/invoices/1", "/invoices/export.csv"):
        response = await client.get(path)
        assert response.status_code in (302, 303, 307)
        assert response.headers["location"].startswith("/login?next=")
    api = await client.get("/api/v1/invoices")
    assert api.status_code == 401
    assert api.headers["content-type"].startswith("application/problem+json")


async def test_post_without_csrf_token_is_refused(live_server, client) -> None:
    response = await client.post(
        "/login", data={"email": "alice@globex.example", "password": "ledgerline-demo"}
    )
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers or "ledgerline_session" not in response.headers.get(
        "set-cookie", ""
    )
