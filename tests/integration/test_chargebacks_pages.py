"""Staff collections pages over HTTP (a real portal process over the integration
database, staff signed in with password + TOTP): the overdue list with dunning state, a
promise to pay, pausing and resuming; the chargeback list and detail with the evidence
checklist and days left, evidence saved and submitted to the Stripe double; the
reconciliation page; read-only staff and customers are refused."""

# ruff: noqa: F811 - fixtures imported from tests.integration.collections_support

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from core.collections.chargebacks import on_dispute_event
from core.collections.tables import (
    Chargeback,
    PromiseToPay,
    ReconciliationDifference,
    ReconciliationRun,
)
from core.identity.roles import StaffRole
from core.invoicing.tables import Invoice
from tests.conftest import (
    TEST_REDIS_URL,
    free_port,
    server_env,
    stripe_env,
)
from tests.helpers import csrf_from
from tests.integration.assisted_support import _staff, sign_in_staff, use_server_keys
from tests.integration.collections_support import (
    assert_books_balance,
    client,  # noqa: F401 - a fixture
    event_body,
    invoice,
    own_double,  # noqa: F401 - a fixture
    pay_through_stripe,
    signed,
)
from tests.integration.factories import billing_account
from tests.serving import serve
from tests.stripe_double.support import control

REDIS_DB = "/9"  # sessions and throttling apart from the other test servers


@pytest.fixture(scope="module")
def portal(databases, smtp_server, own_double, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    env = server_env(
        databases.it_url,
        tmp_path_factory.mktemp("collections-var"),
        SMTP_URL=smtp_server[0],
        BASE_URL=f"http://127.0.0.1:{port}",
        REDIS_URL=urlunsplit(urlsplit(TEST_REDIS_URL)._replace(path=REDIS_DB)),
        **stripe_env(own_double.url),
    )
    log: Path = tmp_path_factory.mktemp("collections-log") / "server.log"
    with serve(env, log, port) as url:
        yield url


@pytest.fixture
async def web(portal) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=portal, timeout=30) as client:
        yield client


async def post(browser: httpx.AsyncClient, page: str, target: str, **fields: str):
    token = csrf_from((await browser.get(page)).text)
    return await browser.post(target, data={**fields, "_csrf_token": token})


def text(response: httpx.Response) -> str:
    return unescape(response.text)


async def test_collections_pages(db, web, own_double, client, tmp_path) -> None:
    use_server_keys(tmp_path)
    account = await billing_account("USD")
    issue = datetime.now(UTC).date() - timedelta(days=30)
    overdue = await invoice(account, "321.00", issue)
    disputed = await invoice(account, "45.00")
    paid = await pay_through_stripe(client, account, {disputed: 4500})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    await on_dispute_event("charge.dispute.created", dispute, client=client)
    [cb] = await Chargeback.select()
    number = (await Invoice.select(Invoice.number).where(Invoice.id == overdue).first())["number"]

    collector = await _staff("Colin Collector", StaffRole.COLLECTIONS)
    auditor = await _staff("Audrey Auditor", StaffRole.AUDITOR)
    await sign_in_staff(web, collector)

    home = await web.get("/staff")
    assert 'href="/staff/collections"' in home.text
    page = await web.get("/staff/collections")
    assert page.status_code == 200
    assert number in page.text
    assert "$321.00" in text(page)

    detail = f"/staff/collections/invoices/{overdue}"
    refused = await post(
        web, detail, f"{detail}/promise", promised_date="soon", amount="9999.00", note=""
    )
    assert refused.status_code == 422
    assert "Enter the promised date as YYYY-MM-DD." in text(refused)
    assert "at most the open balance" in text(refused)
    assert await PromiseToPay.count() == 0
    promised = (datetime.now(UTC).date() + timedelta(days=5)).isoformat()
    done = await post(
        web, detail, f"{detail}/promise", promised_date=promised, amount="321", note="CFO"
    )
    assert done.status_code == 303
    page = await web.get(done.headers["location"])
    assert "Promise to pay recorded" in page.text
    assert "(open): CFO" in page.text
    assert "Not sending: paused" in page.text  # the chargeback pauses the whole account
    assert "ends when the chargeback is resolved" in page.text

    paused = await post(web, detail, f"{detail}/pause", scope="account", reason="manual", note="x")
    assert paused.status_code == 303
    page = await web.get(detail)
    assert "Whole billing account: manual" in page.text
    bad_schedule = await post(web, detail, f"{detail}/schedule", offsets="1, x")
    assert bad_schedule.status_code == 422
    assert "is not a whole number of days" in text(bad_schedule)

    listing = await web.get("/staff/collections/chargebacks?status=open")
    assert dispute["id"] in listing.text
    cb_page = f"/staff/collections/chargebacks/{cb['id']}"
    page = await web.get(cb_page)
    assert "Evidence checklist (0 of 11)" in page.text
    assert "(7 days left)" in page.text
    assert "Customer communication" in page.text
    bad = await post(web, cb_page, f"{cb_page}/evidence", receipt="a scan", action="save")
    assert bad.status_code == 422
    assert "starts with file_" in text(bad)
    saved = await post(web, cb_page, f"{cb_page}/evidence", receipt="file_receipt1", action="save")
    assert saved.status_code == 303
    assert "Evidence checklist (1 of 11)" in (await web.get(cb_page)).text
    won = await post(
        web,
        cb_page,
        f"{cb_page}/evidence",
        receipt="file_receipt1",
        uncategorized_text="winning_evidence",
        action="submit",
    )
    assert won.status_code == 303
    page = await web.get(cb_page)
    assert "Won" in page.text
    assert (await Invoice.select(Invoice.status).where(Invoice.id == disputed).first())[
        "status"
    ] == "paid"

    recon = await web.get("/staff/collections/reconciliation")
    assert recon.status_code == 200
    assert "Run now" not in recon.text  # finance admins only
    assert (
        await post(
            web, "/staff/collections/reconciliation", "/staff/collections/reconciliation/run"
        )
    ).status_code == 403

    async with httpx.AsyncClient(base_url=str(web.base_url), timeout=30) as other:
        await sign_in_staff(other, auditor)
        assert (await other.get(detail)).status_code == 200
        assert "Record promise" not in (await other.get(detail)).text
        refused = await post(other, detail, f"{detail}/pause", scope="invoice")
        assert refused.status_code == 403
    async with httpx.AsyncClient(base_url=str(web.base_url), timeout=30) as anonymous:
        redirected = await anonymous.get("/staff/collections")
        assert redirected.status_code == 302
        assert redirected.headers["location"].startswith("/login")
    assert await ReconciliationRun.count() == 0
    await assert_books_balance("USD")


async def test_reconciliation_page_for_finance_admin(db, web, client, tmp_path) -> None:
    use_server_keys(tmp_path)
    client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    admin = await _staff("Fiona Finance", StaffRole.FINANCE_ADMIN)
    await sign_in_staff(web, admin)
    page = "/staff/collections/reconciliation"
    ran = await post(web, page, f"{page}/run")
    assert ran.status_code == 303
    shown = await web.get(ran.headers["location"])
    assert "Reconciliation finished." in shown.text
    assert "Missing in ledger" in shown.text
    assert "$25.00" in text(shown)
    [row] = await ReconciliationRun.select()
    assert row["transactions"] == 1
    [diff] = await ReconciliationDifference.select()
    action = f"{page}/differences/{diff['id']}/resolve"
    empty = await post(web, page, action, note="  ")
    assert empty.status_code == 422
    assert "Say how the difference was explained" in empty.text
    resolved = await post(web, page, action, note="Test charge, refunded by hand")
    assert resolved.status_code == 303
    shown = await web.get(f"{page}?status=resolved")
    assert "Test charge, refunded by hand" in shown.text


async def test_dispute_webhook_over_http_applies_once(db, web, client, own_double) -> None:
    """Stripe's signed event POSTed twice to the portal's /webhooks/stripe: one chargeback,
    one entry; a tampered copy is refused."""
    account = await billing_account("USD")
    inv = await invoice(account, "64.00")
    paid = await pay_through_stripe(client, account, {inv: 6400})
    dispute = control(own_double.url, "/_test/disputes", {"payment_intent": paid.payment_intent})
    body = event_body(client, own_double.url, "charge.dispute.created", dispute["id"])
    headers = {"Content-Type": "application/json"}
    forged = await web.post(
        "/webhooks/stripe",
        content=body.replace(b"needs_response", b"won"),
        headers={**headers, "Stripe-Signature": signed(body)},
    )
    assert forged.status_code == 400
    assert await Chargeback.count() == 0
    for _ in range(2):
        delivered = await web.post(
            "/webhooks/stripe", content=body, headers={**headers, "Stripe-Signature": signed(body)}
        )
        assert delivered.status_code == 200
    [cb] = await Chargeback.select()
    assert (cb["status"], cb["reversed_minor"]) == ("open", 6400)
    assert (await Invoice.select(Invoice.balance_minor).where(Invoice.id == inv).first())[
        "balance_minor"
    ] == 6400
    await assert_books_balance("USD")
