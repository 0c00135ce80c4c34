"""Paying over HTTP against a real portal process (uvicorn), PostgreSQL, Redis and this
module's own Stripe double (which signs webhooks for the portal's /webhooks/stripe).

Issue 3: a viewer cannot pay; an approver approves payments above the threshold, not
their own. Issue 5: the pay form's idempotency key (double submit → one attempt), bulk
pay refusals, and ``POST /api/v1/payments`` with 50 concurrent submissions of one key.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import unescape

import httpx
import pytest

from core.identity.tables import CustomerOrganization
from core.ledger.tables import JournalEntry
from core.payments.attempts import PayItem, create_attempt
from core.payments.tables import Payment, PaymentAttempt
from core.usage import keys
from stripe_double import Config, RunningDouble, start_in_thread
from tests.conftest import STRIPE_TEST_WEBHOOK_SECRET, free_port, server_env, stripe_env
from tests.helpers import csrf_from, login
from tests.integration.factories import SYSTEM
from tests.integration.test_payments_world import (
    PASSWORD,
    THRESHOLD,
    World,
    assert_books,
    build_world,
    configure_gateway,
    control,
    save_card,
    succeeded_charges,
)
from tests.serving import serve

IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')


@dataclass
class Portal:
    url: str
    double: RunningDouble


@pytest.fixture(scope="session")  # shared with test_webhooks_stripe
def portal(databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    double = start_in_thread(
        webhooks={f"{url}/webhooks/stripe": STRIPE_TEST_WEBHOOK_SECRET},
        config=Config(webhook_mode="manual", webhook_retry_delays=[0.05]),
    )
    env = server_env(
        databases.it_url,
        tmp_path_factory.mktemp("pay-var"),
        BASE_URL=url,
        **stripe_env(double.url),
    )
    try:
        with serve(env, tmp_path_factory.mktemp("pay-server") / "server.log", port) as served:
            yield Portal(served, double)
    finally:
        double.stop()


@pytest.fixture
async def world(db, portal: Portal) -> World:
    control(portal.double.url, "/_test/reset")
    control(portal.double.url, "/_test/config", {"latency": 0, "webhook_mode": "manual"})
    configure_gateway(portal.double.url, portal.url)
    return await build_world(portal.double.url)


@pytest.fixture
async def client(portal: Portal) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=portal.url, trust_env=False, timeout=30) as c:
        yield c


@asynccontextmanager
async def _signed_in(portal: Portal, email: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=portal.url, trust_env=False, timeout=30) as c:
        await login(c, email, PASSWORD)
        yield c


async def _pay(
    c: httpx.AsyncClient, fields: dict[str, object], *, page: str = "/pay"
) -> httpx.Response:
    form_page = await c.get(page)
    assert form_page.status_code == 200, form_page.text[:300]
    data = {
        "_csrf_token": csrf_from(form_page.text),
        "idempotency_key": IDEM.search(form_page.text).group(1),
        **fields,
    }
    return await c.post("/pay", data=data)


async def test_viewer_cannot_pay(world: World, portal: Portal) -> None:
    async with _signed_in(portal, "viewer@pay.example") as c:
        inv = world.invoices["a"]
        assert (await c.get(f"/invoices/{inv}")).status_code == 200  # may see it
        assert (await c.get("/pay")).status_code == 403
        assert (await c.get(f"/pay/button/{inv}")).text.strip() == ""
        assert "Pay" not in (await c.get("/pay/nav")).text
        page = await c.get(f"/invoices/{inv}")
        response = await c.post(
            "/pay",
            data={
                "_csrf_token": csrf_from(page.text),
                "idempotency_key": "viewer-1",
                "pay": str(inv),
                f"amount_{inv}": "100.00",
                "method": "checkout",
            },
        )
        assert response.status_code == 403
        assert "not pay" in response.text
    assert await PaymentAttempt.count() == 0
    await assert_books()


async def test_payer_pays_with_saved_method_and_double_submit_makes_one_attempt(
    world: World, portal: Portal
) -> None:
    async with _signed_in(portal, "payer@pay.example") as c:
        inv = world.invoices["a"]
        assert "Pay this invoice" in (await c.get(f"/invoices/{inv}/../../pay/button/{inv}")).text
        form_page = await c.get(f"/pay?invoice={inv}")
        method = re.search(r'value="(saved:\d+)"', form_page.text).group(1)
        data = {
            "_csrf_token": csrf_from(form_page.text),
            "idempotency_key": IDEM.search(form_page.text).group(1),
            "pay": str(inv),
            f"amount_{inv}": "100.00",
            "method": method,
        }
        first, second = await asyncio.gather(c.post("/pay", data=data), c.post("/pay", data=data))
        statuses = sorted([first.status_code, second.status_code])
        assert statuses in ([303, 303], [303, 409])
        location = first.headers.get("location") or second.headers["location"]
        page = await c.get(location)
        assert 'data-testid="attempt-status">Paid<' in page.text
    assert await PaymentAttempt.count() == 1
    assert succeeded_charges(portal.double.url) == 1
    assert await Payment.count() == 1
    await assert_books()


async def test_bulk_pay_refuses_overpayment_and_mixed_currencies(
    world: World, portal: Portal
) -> None:
    inv = world.invoices
    async with _signed_in(portal, "payer@pay.example") as c:
        too_much = await _pay(
            c, {"pay": [str(inv["a"])], f"amount_{inv['a']}": "100.01", "method": "checkout"}
        )
        assert too_much.status_code == 422
        assert "exceeds the open balance" in too_much.text
        mixed = await _pay(
            c,
            {
                "pay": [str(inv["a"]), str(inv["eur"])],
                f"amount_{inv['a']}": "10.00",
                f"amount_{inv['eur']}": "10.00",
                "method": "checkout",
            },
        )
        assert mixed.status_code == 422
        assert "mixes currencies" in mixed.text
        totals = await c.get(
            "/pay/totals",
            params={
                "pay": [str(inv["a"]), str(inv["c"])],
                f"amount_{inv['a']}": "10.00",
                f"amount_{inv['c']}": "5.50",
            },
        )
        assert "$15.50" in totals.text
        # Another tenant's invoice: not found.
        foreign = await _pay(
            c,
            {
                "pay": [str(world.other_invoice)],
                f"amount_{world.other_invoice}": "1.00",
                "method": "checkout",
            },
        )
        assert foreign.status_code == 404
        # Three invoices through Checkout: one attempt, redirected to Stripe's page.
        ok = await _pay(
            c,
            {
                "pay": [str(inv["a"]), str(inv["b"]), str(inv["c"])],
                f"amount_{inv['a']}": "100.00",
                f"amount_{inv['b']}": "200.00",
                f"amount_{inv['c']}": "75.50",
                "method": "checkout",
            },
        )
        assert ok.status_code == 303
        go = await c.get(ok.headers["location"])
        assert portal.double.url + "/_hosted/checkout/" in go.text
        attempt = await PaymentAttempt.select().first()
        assert (attempt["status"], attempt["amount_minor"]) == ("processing", 37550)
        # Back from Stripe's page without paying: the session is expired, nothing charged,
        # and the invoices may be paid again.
        back = await c.get(f"/pay/attempts/{attempt['id']}?checkout=canceled")
        assert 'data-testid="attempt-status">Canceled<' in back.text
        again = await _pay(
            c, {"pay": [str(inv["a"])], f"amount_{inv['a']}": "100.00", "method": "checkout"}
        )
        assert again.status_code == 303
    assert succeeded_charges(portal.double.url) == 0
    await assert_books()


async def test_approver_approves_above_threshold_but_not_their_own(
    world: World, portal: Portal
) -> None:
    big = world.invoices["big"]
    async with _signed_in(portal, "payer@pay.example") as payer:
        form_page = await payer.get(f"/pay?invoice={big}")
        method = re.search(r'value="(saved:\d+)"', form_page.text).group(1)
        submitted = await _pay(
            payer,
            {"pay": str(big), f"amount_{big}": "1500.00", "method": method},
            page=f"/pay?invoice={big}",
        )
        assert submitted.status_code == 303
        waiting = await payer.get(submitted.headers["location"])
        assert "Waiting for approval" in waiting.text
        assert (await payer.get("/approvals")).status_code == 403
    attempt = await PaymentAttempt.select().first()
    assert attempt["status"] == "pending_approval"
    assert succeeded_charges(portal.double.url) == 0
    async with _signed_in(portal, "approver@pay.example") as approver:
        page = await approver.get("/approvals")
        assert f"Payment {attempt['id']}" in page.text
        done = await approver.post(
            f"/approvals/{attempt['id']}/approve", data={"_csrf_token": csrf_from(page.text)}
        )
        assert done.status_code == 303
    assert (await PaymentAttempt.select().first())["status"] == "succeeded"
    assert succeeded_charges(portal.double.url) == 1
    # The approver's own payment above the threshold: they cannot approve it.
    async with _signed_in(portal, "approver@pay.example") as approver:
        own = await _pay(
            approver,
            {"pay": str(big), f"amount_{big}": "1200.00", "method": method},
            page=f"/pay?invoice={big}",
        )
        own_id = int(own.headers["location"].rsplit("/", 1)[1])
        page = await approver.get("/approvals")
        assert "You submitted this payment" in page.text
        refused = await approver.post(
            f"/approvals/{own_id}/approve", data={"_csrf_token": csrf_from(page.text)}
        )
        assert refused.status_code == 403
    assert (await PaymentAttempt.select().where(PaymentAttempt.id == own_id).first())[
        "status"
    ] == "pending_approval"
    assert THRESHOLD < 120000
    await assert_books()


async def _api_key(world: World) -> str:
    return (await keys.create_key(world.root, "payments", SYSTEM)).key


async def test_api_fifty_concurrent_submissions_one_key(
    world: World, portal: Portal, client: httpx.AsyncClient
) -> None:
    key = await _api_key(world)
    control(portal.double.url, "/_test/config", {"latency": 0.3})
    body = {
        "invoices": [{"invoice_id": world.invoices["b"], "amount": "250.00"}],
        "payment_method": world.payment_method,
    }
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "order-4711"}
    responses = await asyncio.gather(
        *(client.post("/api/v1/payments", json=body, headers=headers) for _ in range(50))
    )
    codes = [r.status_code for r in responses]
    assert set(codes) <= {201, 409}, codes
    created = [r for r in responses if r.status_code == 201]
    assert created
    assert len({r.content for r in created}) == 1  # replays are byte for byte
    assert created[0].json()["status"] == "succeeded"
    again = await client.post("/api/v1/payments", json=body, headers=headers)
    assert (again.status_code, again.content) == (201, created[0].content)
    assert again.headers["idempotent-replayed"] == "true"
    changed = await client.post(
        "/api/v1/payments",
        json={**body, "invoices": [{"invoice_id": world.invoices["b"], "amount": "1.00"}]},
        headers=headers,
    )
    assert changed.status_code == 422
    assert changed.headers["content-type"].startswith("application/problem+json")
    assert succeeded_charges(portal.double.url) == 1
    assert await Payment.count() == 1
    assert await JournalEntry.count().where(JournalEntry.source_type == "payment") == 1
    await assert_books()


async def test_api_bad_requests_change_nothing(
    world: World, portal: Portal, client: httpx.AsyncClient
) -> None:
    key = await _api_key(world)
    auth = {"Authorization": f"Bearer {key}"}
    body = {
        "invoices": [{"invoice_id": world.invoices["b"], "amount": "250.00"}],
        "payment_method": world.payment_method,
    }
    assert (await client.post("/api/v1/payments", json=body)).status_code == 401
    assert (await client.post("/api/v1/payments", json=body, headers=auth)).status_code == 400
    cases = [
        ({**body, "invoices": [{"invoice_id": world.other_invoice, "amount": "1"}]}, 404),
        ({**body, "invoices": [{"invoice_id": world.invoices["b"], "amount": "250.01"}]}, 422),
        ({**body, "invoices": [{"invoice_id": world.invoices["b"], "amount": "abc"}]}, 422),
        ({**body, "payment_method": "pm_nope"}, 422),
        ({"invoices": "x"}, 422),
    ]
    for n, (payload, status) in enumerate(cases):
        r = await client.post(
            "/api/v1/payments", json=payload, headers={**auth, "Idempotency-Key": f"bad-{n}"}
        )
        assert r.status_code == status, (payload, r.text)
    # A corrected retry with a key whose first use was bad input runs.
    fixed = await client.post(
        "/api/v1/payments", json=body, headers={**auth, "Idempotency-Key": "bad-1"}
    )
    assert fixed.status_code == 201
    assert await Payment.count() == 1
    # Above the threshold: waits for an approver, nothing charged.
    await CustomerOrganization.update({CustomerOrganization.approval_threshold_minor: 100}).where(
        CustomerOrganization.id == world.root
    )
    waiting = await client.post(
        "/api/v1/payments",
        json={**body, "invoices": [{"invoice_id": world.invoices["a"], "amount": "50.00"}]},
        headers={**auth, "Idempotency-Key": "big-1"},
    )
    assert (waiting.status_code, waiting.json()["status"]) == (201, "pending_approval")
    assert succeeded_charges(portal.double.url) == 1
    await assert_books()


async def test_another_groups_attempt_is_not_found(world: World, portal: Portal) -> None:
    foreign = await create_attempt(
        organization_root_id=world.other_root,
        items=[PayItem(world.other_invoice, 6000)],
        kind="checkout",
        user_id=None,
        actor=SYSTEM,
    )
    async with _signed_in(portal, "approver@pay.example") as c:
        csrf = csrf_from((await c.get("/pay")).text)
        assert (await c.get(f"/pay/attempts/{foreign.id}")).status_code == 404
        assert (await c.get(f"/pay/attempts/{foreign.id}/checkout")).status_code == 404
        assert (await c.get(f"/pay/button/{world.other_invoice}")).status_code == 404
        for action in ("checkout", "approve", "reject"):
            prefix = "/pay/attempts" if action == "checkout" else "/approvals"
            r = await c.post(f"{prefix}/{foreign.id}/{action}", data={"_csrf_token": csrf})
            assert r.status_code == 404, (action, r.status_code)
        assert (await c.get(f"/pay/attempts/{2**31}")).status_code == 404
    assert (await PaymentAttempt.select().first())["status"] == "ready"


@pytest.mark.parametrize("outcome", ["complete", "fail"])
async def test_saved_card_payment_the_bank_wants_authenticated(
    world: World, portal: Portal, outcome: str
) -> None:
    """Paying with a saved card in the portal is an on-session payment: when the bank asks
    for 3-D Secure, the customer is sent to its page and back; completed, the invoice is
    paid once; failed, nothing is charged and the page says so."""
    _, method_id = await save_card(
        world.root, world.stripe_customer, "tok_threeDSecure2Required", "3220", default=False
    )
    inv = world.invoices["a"]
    async with _signed_in(portal, "payer@pay.example") as c:
        response = await _pay(
            c,
            {"pay": str(inv), f"amount_{inv}": "100.00", "method": f"saved:{method_id}"},
            page=f"/pay?invoice={inv}",
        )
        assert response.status_code == 303
        assert re.fullmatch(r"/pay/attempts/\d+/authenticate", response.headers["location"])
        attempt_url = response.headers["location"].removesuffix("/authenticate")
        waiting = await c.get(attempt_url)
        assert 'data-testid="attempt-status">Needs your action<' in waiting.text
        assert "Confirm with your bank" in waiting.text
        hand_off = await c.get(response.headers["location"])
        assert hand_off.status_code == 200
        link = re.search(
            r'<a href="([^"]+)" role="button" data-testid="authenticate-continue"', hand_off.text
        )
        bank_url = unescape(link.group(1))
        assert bank_url.startswith(portal.double.url + "/_hosted/authenticate/")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as bank:
            assert (await bank.get(bank_url)).status_code == 200
            back = await bank.post(bank_url, data={"result": outcome})
        assert back.status_code in (302, 303)
        return_url = back.headers["location"]
        assert return_url.startswith(portal.url + attempt_url + "?")
        page = await c.get(return_url.removeprefix(portal.url))
    if outcome == "complete":
        assert 'data-testid="attempt-status">Paid<' in page.text
        assert succeeded_charges(portal.double.url) == 1
        assert await Payment.count() == 1
    else:
        assert 'data-testid="attempt-status">Failed<' in page.text
        assert "Nothing was charged" in page.text
        assert succeeded_charges(portal.double.url) == 0
        assert await Payment.count() == 0
    await assert_books()
