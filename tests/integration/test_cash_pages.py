"""The staff cash pages over HTTP (live server on the demo database, with objects of
this test's own: a fresh issuing entity, customer, invoices, payments and staff who sign
in with password + TOTP). Bad input re-renders the form with the field's message and
changes nothing; roles are enforced; the customer sees the credit line on the invoice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pytest

from core.cash.tables import Refund, WriteOff
from core.identity.roles import StaffRole
from core.invoicing.tables import Invoice
from core.payments.tables import Allocation, Payment
from tests.helpers import csrf_from, login
from tests.integration.assisted_support import Staff, _staff, sign_in_staff
from tests.integration.cash_support import PASSWORD, World, assert_books, build, pay


@pytest.fixture
async def world(demo_db, tmp_path) -> World:
    return await build(tmp_path)


def client_for(live_server) -> httpx.AsyncClient:
    ip = "10.77." + ".".join(str(b) for b in uuid.uuid4().bytes[:2])
    return httpx.AsyncClient(base_url=live_server.url, timeout=20, headers={"X-Forwarded-For": ip})


@pytest.fixture
async def signed_in(live_server, demo_db) -> AsyncIterator:
    clients: list[httpx.AsyncClient] = []

    async def make(role: StaffRole) -> tuple[httpx.AsyncClient, Staff]:
        staff = await _staff(f"Cash {role.value}", role)
        client = client_for(live_server)
        clients.append(client)
        await sign_in_staff(client, staff)
        return client, staff

    yield make
    for c in clients:
        await c.aclose()


async def form_post(client: httpx.AsyncClient, page: str, action: str, **fields: str):
    token = csrf_from((await client.get(page)).text)
    return await client.post(action, data={**fields, "_csrf_token": token})


def text(response: httpx.Response) -> str:
    return unescape(response.text)


async def test_roles_support_agents_out_auditors_read_only(world, signed_in, tmp_path) -> None:
    support, _ = await signed_in(StaffRole.SUPPORT_AGENT)
    assert (await support.get("/staff/cash")).status_code == 403
    assert (await support.get(f"/staff/cash/payments/{world.payment}")).status_code == 403

    auditor, _ = await signed_in(StaffRole.AUDITOR)
    page = await auditor.get(f"/staff/cash/payments/{world.payment}")
    assert page.status_code == 200
    assert "Read-only" in page.text
    assert 'data-testid="apply-form"' not in page.text
    refused = await form_post(
        auditor,
        "/staff/cash/unapplied",
        f"/staff/cash/payments/{world.payment}/apply",
        **{f"amount-{world.invoices[0]}": "10.00"},
    )
    assert refused.status_code == 403
    assert (await Payment.select().where(Payment.id == world.payment).first())[
        "unapplied_minor"
    ] == 15000
    for path in (
        "/staff/cash",
        "/staff/cash/unapplied",
        "/staff/cash/rules",
        "/staff/cash/discount-terms",
        "/staff/cash/invoices",
        f"/staff/cash/invoices/{world.invoices[0]}",
    ):
        assert (await auditor.get(path)).status_code == 200, path
    assert (await auditor.get("/staff/cash/payments/99999999")).status_code == 404


async def test_apply_and_unapply_through_the_payment_page(world, signed_in) -> None:
    ops, _ = await signed_in(StaffRole.BILLING_OPS)
    listing = text(await ops.get(f"/staff/cash/unapplied?q={world.code}"))
    assert f"Payment {world.payment}" in listing
    assert "$150.00" in listing
    page = f"/staff/cash/payments/{world.payment}"
    first, second = world.invoices
    bad = await form_post(ops, page, f"{page}/apply", **{f"amount-{first}": "ten dollars"})
    assert bad.status_code == 422
    assert "Enter an amount like" in text(bad)
    assert 'aria-invalid="true"' in bad.text
    too_much = await form_post(ops, page, f"{page}/apply", **{f"amount-{first}": "111.00"})
    assert too_much.status_code == 422
    assert "exceeds the open balance" in text(too_much)
    nothing = await form_post(ops, page, f"{page}/apply")
    assert nothing.status_code == 422
    assert (await Allocation.count().where(Allocation.payment == world.payment)) == 0

    done = await form_post(
        ops, page, f"{page}/apply", **{f"amount-{first}": "110.00", f"amount-{second}": "20"}
    )
    assert done.status_code == 303, done.text[:300]
    shown = text(await ops.get(done.headers["location"]))
    assert "Cash applied." in shown
    assert "$20.00" in shown  # 150 - 110 - 20 left unapplied
    inv = await Invoice.select().where(Invoice.id == first).first()
    assert inv["status"] == "paid"

    alloc = await Allocation.select().where(Allocation.invoice == first).first()
    missing = await form_post(
        ops, page, f"/staff/cash/allocations/{alloc['id']}/unapply", reason=" "
    )
    assert missing.status_code == 422
    assert "Give a reason" in text(missing)
    undone = await form_post(
        ops, page, f"/staff/cash/allocations/{alloc['id']}/unapply", reason="wrong invoice"
    )
    assert undone.status_code == 303
    assert (await Invoice.select().where(Invoice.id == first).first())["balance_minor"] == 11000
    gone = await form_post(ops, page, "/staff/cash/allocations/99999999/unapply", reason="x")
    assert gone.status_code == 404
    await assert_books("USD")


async def test_write_off_request_and_approval_pages(world, signed_in) -> None:
    ops, _ = await signed_in(StaffRole.BILLING_OPS)
    admin, _ = await signed_in(StaffRole.FINANCE_ADMIN)
    invoice = world.invoices[1]
    page = f"/staff/cash/invoices/{invoice}"
    empty = await form_post(ops, page, f"{page}/write-off", wo_reason="")
    assert empty.status_code == 422
    assert "Give a reason" in text(empty)
    asked = await form_post(ops, page, f"{page}/write-off", wo_reason="customer insolvent")
    assert asked.headers["location"].endswith("notice=pending_approval")
    request = await WriteOff.select().where(WriteOff.invoice == invoice).first()

    queue = text(await ops.get("/staff/cash"))
    assert world.numbers[1] in queue
    assert 'data-testid="approve-write-off"' not in queue  # billing ops cannot approve
    refused = await form_post(ops, "/staff/cash", f"/staff/cash/write-offs/{request['id']}/approve")
    assert refused.status_code == 403

    no_note = await form_post(
        admin, "/staff/cash", f"/staff/cash/write-offs/{request['id']}/reject"
    )
    assert no_note.status_code == 422
    assert "Say why" in text(no_note)
    ok = await form_post(admin, "/staff/cash", f"/staff/cash/write-offs/{request['id']}/approve")
    assert ok.headers["location"] == "/staff/cash?notice=approved"
    twice = await form_post(admin, "/staff/cash", f"/staff/cash/write-offs/{request['id']}/approve")
    assert twice.status_code == 409
    assert (await Invoice.select().where(Invoice.id == invoice).first())[
        "status"
    ] == "uncollectible"
    await assert_books("USD")


async def test_settlement_shows_on_the_customers_invoice(world, signed_in, live_server) -> None:
    invoice = world.invoices[0]
    await pay(world.account, 10950, [(invoice, 10950)], currency_code="USD")  # 0.50 short
    collections, _ = await signed_in(StaffRole.COLLECTIONS)
    page = f"/staff/cash/invoices/{invoice}"
    unearned = await form_post(collections, page, f"{page}/settle", kind="early_payment_discount")
    assert unearned.status_code == 422
    assert "no early-payment discount" in text(unearned)
    bad_kind = await form_post(collections, page, f"{page}/settle", kind="gift", settle_reason="x")
    assert bad_kind.status_code == 422
    ok = await form_post(
        collections, page, f"{page}/settle", kind="short_payment", settle_reason="bank charges"
    )
    assert ok.status_code == 303
    staff_view = text(await collections.get(page))
    assert "Accepted short payment" in staff_view

    async with client_for(live_server) as customer:
        await login(customer, world.customer_email, PASSWORD)
        detail = text(await customer.get(f"/invoices/{invoice}"))
        assert 'data-testid="credits-link"' in detail
        assert "$0.50 of this invoice was credited" in detail
        credits = text(await customer.get(f"/invoices/{invoice}/credits"))
        assert "Accepted short payment" in credits
        assert "$0.45" in credits
        assert "$0.05" in credits
        fragment = await customer.get(
            f"/invoices/{invoice}/credits", headers={"HX-Request": "true"}
        )
        assert "<html" not in fragment.text
        assert "Accepted short payment" in fragment.text
        assert (await customer.get("/staff/cash")).status_code == 403
    await assert_books("USD")


async def test_refund_request_and_approval(world, signed_in) -> None:
    ops, _ = await signed_in(StaffRole.BILLING_OPS)
    admin, _ = await signed_in(StaffRole.FINANCE_ADMIN)
    page = f"/staff/cash/payments/{world.payment}"
    for amount, reason, message in (
        ("abc", "overpaid", "Enter an amount like"),
        ("200.00", "overpaid", "exceeds the payment's unapplied cash"),
        ("10.00", "", "Give a reason"),
    ):
        bad = await form_post(
            ops, page, f"{page}/refunds", refund_amount=amount, refund_reason=reason
        )
        assert bad.status_code == 422, amount
        assert message in text(bad)
    assert await Refund.count().where(Refund.payment == world.payment) == 0
    asked = await form_post(
        ops, page, f"{page}/refunds", refund_amount="40.00", refund_reason="overpaid"
    )
    assert asked.status_code == 303
    refund = await Refund.select().where(Refund.payment == world.payment).first()
    approved = await form_post(admin, "/staff/cash", f"/staff/cash/refunds/{refund['id']}/approve")
    assert approved.headers["location"] == "/staff/cash?notice=refund_processing"
    paid_out = await form_post(admin, "/staff/cash", f"/staff/cash/refunds/{refund['id']}/complete")
    assert paid_out.headers["location"] == "/staff/cash?notice=refund_succeeded"
    assert (await Payment.select().where(Payment.id == world.payment).first())[
        "unapplied_minor"
    ] == 11000
    await assert_books("USD")


async def test_rule_and_terms_forms(world, signed_in) -> None:
    admin, _ = await signed_in(StaffRole.FINANCE_ADMIN)
    ops, _ = await signed_in(StaffRole.BILLING_OPS)
    bad = await form_post(
        admin,
        "/staff/cash/rules",
        "/staff/cash/rules",
        currency="ZZZ",
        max_amount="1",
        max_percent="500",
    )
    assert bad.status_code == 422
    assert "three-letter ISO 4217" in text(bad)
    assert "between 0 and 100" in text(bad)
    saved = await form_post(
        admin,
        "/staff/cash/rules",
        "/staff/cash/rules",
        currency="chf",
        max_amount="2.50",
        max_percent="0.5",
    )
    assert saved.headers["location"] == "/staff/cash/rules?notice=rule_saved"
    rules = text(await admin.get("/staff/cash/rules"))
    assert "CHF" in rules
    assert "0.5 %" in rules
    refused = await form_post(
        ops, "/staff/cash/rules", "/staff/cash/rules", currency="CHF", max_amount="9"
    )
    assert refused.status_code == 403

    bad_terms = await form_post(
        ops,
        "/staff/cash/discount-terms",
        "/staff/cash/discount-terms",
        account="NOPE",
        percent="x",
        days="-3",
    )
    assert bad_terms.status_code == 422
    body = text(bad_terms)
    assert "existing billing account" in body
    assert "between 0 and 50" in body
    ok = await form_post(
        ops,
        "/staff/cash/discount-terms",
        "/staff/cash/discount-terms",
        account=world.code,
        percent="2",
        days="10",
    )
    assert ok.status_code == 303
    assert world.code in text(await ops.get("/staff/cash/discount-terms"))
    found = await ops.get(f"/staff/cash/invoices?number={world.numbers[0]}")
    assert found.headers["location"] == f"/staff/cash/invoices/{world.invoices[0]}"
    missing = await ops.get("/staff/cash/invoices?number=NOPE-1")
    assert missing.status_code == 404
    assert "No invoice with that number" in missing.text
