"""The staff finance pages over HTTP (live server on the demo database, with this
test's own issuing entity, customer, drafts and staff signing in with password + TOTP):
roles (support agents out, auditors read-only), approve (not by the creator), finalize,
the drafts list with filters (full page and htmx fragment), rates (manual entry, ECB
upload: malformed → message and nothing stored; re-import idempotent), period locks,
tax settings and policies (bad input → the field's message, nothing changed)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

import httpx
import pytest

from core.audit.log import Actor
from core.fx.tables import ExchangeRate
from core.identity.roles import StaffRole
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
)
from core.invoicing.rules import LineInput
from core.invoicing.services import create_draft, set_invoicing_policy
from core.invoicing.tables import Invoice, InvoicingPolicy
from core.ledger.tables import PeriodLock
from tests.helpers import csrf_from
from tests.integration.assisted_support import Staff, _staff, sign_in_staff, use_server_keys
from tests.unit.test_fx_rates import ecb

SEED = Actor.system("finance-page-tests")


@dataclass
class World:
    entity: int
    code: str
    account_code: str
    small: int
    large: int


@pytest.fixture
async def team(demo_db, tmp_path) -> dict[StaffRole, Staff]:
    use_server_keys(tmp_path)
    return {
        role: await _staff(f"Finance {role.value}", role)
        for role in (
            StaffRole.FINANCE_ADMIN,
            StaffRole.BILLING_OPS,
            StaffRole.AUDITOR,
            StaffRole.SUPPORT_AGENT,
        )
    }


@pytest.fixture
async def world(team) -> World:
    return await build_world(team[StaffRole.BILLING_OPS])


async def build_world(creator: Staff) -> World:
    """An entity (approval threshold 1,000.00 EUR) and two drafts created by ``creator``:
    100.00 (no approval needed) and 5,000.00 (needs one)."""
    tag = uuid.uuid4().hex[:6].upper()
    entity = await create_issuing_entity(
        code=f"F{tag}",
        name=f"Finance tests {tag}",
        legal_name="Finance Tests GmbH",
        country="DE",
        functional_currency="EUR",
    )
    org = await create_organization(name=f"Finance customer {tag}", country="DE")
    account_code = f"FIN-{tag}"
    account = await create_billing_account(
        code=account_code,
        name=f"Finance customer {tag}",
        organization_id=org,
        issuing_entity_id=entity,
        currency_code="EUR",
    )
    await set_invoicing_policy(entity, 100_000, "", SEED)  # 1,000.00 EUR
    ops = Actor(type="staff", id=str(creator.id))
    line = LineInput("Consulting", Decimal(1), Decimal("100.00"), Decimal("0.19"), "STD")
    big = LineInput("Project", Decimal(1), Decimal("5000.00"), Decimal("0.19"), "STD")
    small = await create_draft(account, [line], ops)
    large = await create_draft(account, [big], ops)
    return World(entity, f"F{tag}", account_code, small, large)


@pytest.fixture
async def signed_in(live_server, team) -> AsyncIterator:
    clients: list[httpx.AsyncClient] = []

    async def make(role: StaffRole) -> httpx.AsyncClient:
        ip = "10.78." + ".".join(str(b) for b in uuid.uuid4().bytes[:2])
        client = httpx.AsyncClient(
            base_url=live_server.url, timeout=20, headers={"X-Forwarded-For": ip}
        )
        clients.append(client)
        await sign_in_staff(client, team[role])
        return client

    yield make
    for c in clients:
        await c.aclose()


async def form_post(client: httpx.AsyncClient, page: str, target: str, /, **fields: str):
    token = csrf_from((await client.get(page)).text)
    return await client.post(target, data={**fields, "_csrf_token": token})


def text(response: httpx.Response) -> str:
    return unescape(response.text)


async def _status(invoice_id: int) -> dict[str, object]:
    return (
        await Invoice.select(Invoice.status, Invoice.approval_status, Invoice.number)
        .where(Invoice.id == invoice_id)
        .first()
    )


async def test_roles_and_the_review_flow(world, signed_in) -> None:
    support = await signed_in(StaffRole.SUPPORT_AGENT)
    assert (await support.get("/staff/finance/drafts")).status_code == 403

    auditor = await signed_in(StaffRole.AUDITOR)
    for path in (
        "/staff/finance/drafts",
        f"/staff/finance/drafts/{world.large}",
        "/staff/finance/rates",
        "/staff/finance/tax",
        "/staff/finance/periods",
        "/staff/finance/policies",
        "/staff/finance/gl",
    ):
        page = await auditor.get(path)
        assert page.status_code == 200, path
        assert "Read-only" in page.text
        assert 'method="post" action="/staff/finance' not in page.text, path
    page = f"/staff/finance/drafts/{world.large}"
    refused = await form_post(auditor, page, f"{page}/approve")
    assert refused.status_code == 403
    assert (await _status(world.large))["approval_status"] == "not_required"

    ops = await signed_in(StaffRole.BILLING_OPS)
    listing = await ops.get(f"/staff/finance/drafts?q={world.account_code}")
    assert f"/staff/finance/drafts/{world.large}" in listing.text
    assert "2 drafts" in listing.text
    fragment = await ops.get(
        f"/staff/finance/drafts?q={world.account_code}&approval=pending",
        headers={"HX-Request": "true"},
    )
    assert "<html" not in fragment.text
    assert "0 drafts" in fragment.text

    held = await form_post(ops, page, f"{page}/finalize")
    assert held.status_code == 409
    assert "approval needed" in text(held)
    assert (await _status(world.large))["approval_status"] == "pending"
    detail = await ops.get(page)
    assert "You created this draft" in text(detail)
    self_approval = await form_post(ops, page, f"{page}/approve")
    assert self_approval.status_code == 409
    assert "created this draft cannot approve" in text(self_approval)

    admin = await signed_in(StaffRole.FINANCE_ADMIN)
    approved = await form_post(admin, page, f"{page}/approve")
    assert approved.status_code == 303
    assert (await _status(world.large))["approval_status"] == "approved"
    done = await form_post(ops, page, f"{page}/finalize")
    assert done.status_code == 303
    after = await _status(world.large)
    assert after["status"] == "open"
    assert after["number"].startswith(f"INV-{world.code}-")
    shown = text(await ops.get(page))
    assert after["number"] in shown
    assert "identity" in shown  # EUR → EUR: rate 1

    today = datetime.now(UTC).date()  # the server issues with today's UTC date
    span = f"date_from={today - timedelta(days=1)}&date_to={today + timedelta(days=1)}"
    csv_text = await auditor.get(f"/staff/finance/gl/export.csv?entity={world.entity}&{span}")
    assert csv_text.status_code == 200
    assert csv_text.headers["content-type"].startswith("text/csv")
    assert f"Invoice {after['number']}" in csv_text.text
    assert ",2200,Tax payable,EUR,,950.00,STD," in csv_text.text
    bad = await auditor.get("/staff/finance/gl/export.csv?date_from=2026-05-01&date_to=2025-01-01")
    assert bad.status_code == 422
    assert "on or after the start" in text(bad)
    bad = await auditor.get("/staff/finance/gl/export.csv?date_from=soon&entity=99999999999")
    assert bad.status_code == 422
    assert "Enter a date as YYYY-MM-DD." in text(bad)

    recompute = f"/staff/finance/drafts/{world.small}"
    assert (await form_post(ops, recompute, f"{recompute}/recompute-tax")).status_code == 303
    for missing in ("999999999", str(2**31), str(10**20)):
        assert (await admin.get(f"/staff/finance/drafts/{missing}")).status_code == 404
        gone = await form_post(admin, recompute, f"/staff/finance/drafts/{missing}/finalize")
        assert gone.status_code == 404


async def test_rates_pages(world, signed_in) -> None:
    admin = await signed_in(StaffRole.FINANCE_ADMIN)
    page = "/staff/finance/rates"
    bad = await form_post(
        admin, page, page, base="EUR", quote="USD", rate="-1", rate_date="2001-01-02"
    )
    assert bad.status_code == 422
    assert "greater than zero" in text(bad)
    before = await ExchangeRate.count()

    token = csrf_from((await admin.get(page)).text)
    broken = await admin.post(
        f"{page}/import",
        data={"_csrf_token": token},
        files={"file": ("eurofxref-daily.xml", b"<Envelope><Cube>", "text/xml")},
    )
    assert broken.status_code == 422
    assert "not well-formed" in text(broken)
    assert await ExchangeRate.count() == before

    daily = ecb(
        "<Cube time='2001-01-02'><Cube currency='USD' rate='0.9423'/>"
        "<Cube currency='JPY' rate='108.17'/></Cube>"
    )
    said = []
    for _ in range(2):
        token = csrf_from((await admin.get(page)).text)
        imported = await admin.post(
            f"{page}/import",
            data={"_csrf_token": token},
            files={"file": ("eurofxref-daily.xml", daily, "text/xml")},
        )
        assert imported.status_code == 200
        said.append(text(imported))
    assert "Imported 2 rate(s) over 1 day(s); 0 were already present." in said[0]
    assert "Imported 0 rate(s) over 1 day(s); 2 were already present." in said[1]
    assert await ExchangeRate.count() == before + 2
    assert "108.17" in said[1]


async def test_periods_tax_and_policy_forms(world, signed_in) -> None:
    admin = await signed_in(StaffRole.FINANCE_ADMIN)
    page = "/staff/finance/periods"
    no_reason = await form_post(
        admin, page, page, entity=str(world.entity), period="2026-01", reason="", action="lock"
    )
    assert no_reason.status_code == 422
    assert "Give a reason" in text(no_reason)
    bad_month = await form_post(
        admin, page, page, entity=str(world.entity), period="2026-13", reason="x", action="lock"
    )
    assert "Enter a month as YYYY-MM" in text(bad_month)
    for bad_entity in ("x", str(10**20), "999999"):
        refused = await form_post(
            admin, page, page, entity=bad_entity, period="2026-01", reason="x", action="lock"
        )
        assert refused.status_code == 422
        assert "Choose an issuing entity." in text(refused)
        refused = await form_post(
            admin,
            "/staff/finance/policies",
            "/staff/finance/policies",
            entity=bad_entity,
            threshold="",
            number_format="",
        )
        assert refused.status_code == 422
    assert await PeriodLock.count().where(PeriodLock.issuing_entity == world.entity) == 0
    locked = await form_post(
        admin,
        page,
        page,
        entity=str(world.entity),
        period="2026-01",
        reason="closed",
        action="lock",
    )
    assert locked.status_code == 303
    listing = text(await admin.get(page))
    assert "2026-01" in listing
    assert "closed" in listing
    twice = await form_post(
        admin,
        page,
        page,
        entity=str(world.entity),
        period="2026-01",
        reason="again",
        action="lock",
    )
    assert twice.status_code == 409
    unlocked = await form_post(
        admin,
        page,
        page,
        entity=str(world.entity),
        period="2026-01",
        reason="reopen",
        action="unlock",
    )
    assert unlocked.status_code == 303

    tax = "/staff/finance/tax"
    bad_settings = await form_post(
        admin,
        tax,
        f"{tax}/settings",
        provider="http",
        base_url="not a url",
        timeout_ms="5",
        company_code="",
    )
    assert bad_settings.status_code == 422
    assert "base URL" in text(bad_settings)
    assert "between 100 and 30000" in text(bad_settings)
    assert "built-in rules" in text(await admin.get(tax))  # nothing changed
    bad_rate = await form_post(
        admin,
        tax,
        f"{tax}/rates",
        country="Germany",
        region="",
        tax_code="STD",
        rate="abc",
        description="",
    )
    assert bad_rate.status_code == 422
    assert "two-letter country code" in text(bad_rate)

    no_account = await form_post(
        admin,
        tax,
        f"{tax}/exemptions",
        account_code="NOPE",
        certificate_ref="C-1",
        valid_until="",
    )
    assert no_account.status_code == 422
    assert "No billing account has this code." in text(no_account)
    exempted = await form_post(
        admin,
        tax,
        f"{tax}/exemptions",
        account_code=world.account_code,
        certificate_ref="CERT-77",
        valid_until="2030-12-31",
    )
    assert exempted.status_code == 303
    assert "certificate CERT-77, valid until 31 Dec 2030" in text(await admin.get(tax))

    policies = "/staff/finance/policies"
    bad_format = await form_post(
        admin,
        policies,
        policies,
        entity=str(world.entity),
        threshold="12,34.5",
        number_format="{doc}-{seq}",
    )
    assert bad_format.status_code == 422
    assert "Enter an amount" in text(bad_format)
    bad_format = await form_post(
        admin,
        policies,
        policies,
        entity=str(world.entity),
        threshold="",
        number_format="{doc}-{seq}",
    )
    assert "Missing required token(s): entity, year." in text(bad_format)
    saved = await form_post(
        admin,
        policies,
        policies,
        entity=str(world.entity),
        threshold="2500.00",
        number_format="{doc}/{entity}/{year}/{seq:05}",
    )
    assert saved.status_code == 303
    policy = await InvoicingPolicy.select().where(InvoicingPolicy.issuing_entity == world.entity)
    assert (policy[0]["approval_threshold_minor"], policy[0]["number_format"]) == (
        250_000,
        "{doc}/{entity}/{year}/{seq:05}",
    )
