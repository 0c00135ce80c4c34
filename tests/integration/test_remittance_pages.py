"""The cash application pages over HTTP (live server on the demo database, with this
test's own issuing entity, customer and invoices; staff sign in with password + TOTP):
import with result and refusal, the workbench, accepting a suggestion, a split with bad
input, roles (support agents out, auditors read-only)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pytest

from core.audit.log import Actor
from core.identity.roles import StaffRole
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
)
from core.invoicing.tables import Invoice
from core.remittance.tables import StatementLine
from tests.helpers import csrf_from
from tests.integration.assisted_support import Staff, _staff, sign_in_staff, use_server_keys
from tests.integration.cash_support import open_invoice

SEED = Actor.system("remittance-page-tests")


async def own_invoices(amounts: tuple[str, ...]) -> tuple[list[int], list[str], str]:
    # letters only: digits in the tag would read as invoice numbers in the remittance text
    tag = uuid.uuid4().hex[:6].translate(str.maketrans("0123456789", "ghijklmnop"))
    entity = await create_issuing_entity(
        code=f"R{tag}",
        name="Remit tests",
        legal_name="Remit Tests Inc.",
        country="US",
        functional_currency="USD",
    )
    org = await create_organization(name=f"Remit customer {tag}")
    account = await create_billing_account(
        code=f"REMIT-{tag}",
        name=f"Remit customer {tag}",
        organization_id=org,
        issuing_entity_id=entity,
        currency_code="USD",
        payment_terms_days=30,
    )
    ids = [await open_invoice(account, amount) for amount in amounts]
    numbers = [
        (await Invoice.select(Invoice.number).where(Invoice.id == i).first())["number"] for i in ids
    ]
    return ids, numbers, tag


def camt(statement_id: str, entries: list[tuple[str, str, str]]) -> bytes:
    ntry = "".join(
        f'<Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        "<ValDt><Dt>2026-11-20</Dt></ValDt><NtryDtls><TxDtls><RltdPties>"
        f"<Dbtr><Nm>Payer {iban[-8:]}</Nm>"
        f"</Dbtr><DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct></RltdPties>"
        f"<RmtInf><Ustrd>{ref}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
        for amount, ref, iban in entries
    )
    return (
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
        f"<Stmt><Id>{statement_id}</Id>{ntry}</Stmt></BkToCstmrStmt></Document>"
    ).encode()


@pytest.fixture
async def signed_in(live_server, demo_db, tmp_path) -> AsyncIterator:
    use_server_keys(tmp_path)
    clients: list[httpx.AsyncClient] = []

    async def make(role: StaffRole) -> tuple[httpx.AsyncClient, Staff]:
        staff = await _staff(f"Remit {role.value}", role)
        ip = "10.78." + ".".join(str(b) for b in uuid.uuid4().bytes[:2])
        client = httpx.AsyncClient(
            base_url=live_server.url, timeout=30, headers={"X-Forwarded-For": ip}
        )
        clients.append(client)
        await sign_in_staff(client, staff)
        return client, staff

    yield make
    for c in clients:
        await c.aclose()


async def upload(client: httpx.AsyncClient, data: bytes, fmt: str = "camt053") -> httpx.Response:
    token = csrf_from((await client.get("/staff/remittance/import")).text)
    return await client.post(
        "/staff/remittance/import",
        data={"format": fmt, "mapping": "", "_csrf_token": token},
        files={"file": ("statement.xml", data, "application/xml")},
    )


async def test_import_workbench_and_accepting_a_suggestion(signed_in) -> None:
    ids, numbers, tag = await own_invoices(("100.00", "37.13"))
    ops, _ = await signed_in(StaffRole.BILLING_OPS)
    iban = f"DE44{uuid.uuid4().int % 10**18:018d}"
    other_iban = f"DE55{uuid.uuid4().int % 10**18:018d}"
    data = camt(
        f"PAGES-{tag}",
        [("100.00", f"Invoice {numbers[0]}", iban), ("37.13", f"advice {tag}", other_iban)],
    )
    response = await upload(ops, data)
    page = unescape(response.text)
    assert response.status_code == 200, page[:500]
    assert "<strong>1</strong> applied automatically, 1 with a suggestion" in page, page[
        page.find("<main") :
    ][:1500]

    again = await upload(ops, data)
    assert again.status_code == 422
    assert "already imported" in unescape(again.text)
    broken = await upload(ops, data.replace(b"37.13", b"37.1x").replace(tag.encode(), b"X"))
    assert broken.status_code == 422
    assert "&lt;Ntry&gt; #2" in broken.text or "<Ntry> #2" in unescape(broken.text)

    line = await StatementLine.select().where(StatementLine.reference == f"advice {tag}").first()
    assert line["status"] == "suggested"
    workbench = await ops.get("/staff/remittance", params={"q": f"advice {tag}"})
    assert f"#{line['id']}" in workbench.text
    fragment = await ops.get(
        "/staff/remittance",
        params={"q": f"advice {tag}"},
        headers={"HX-Request": "true", "HX-Target": "line-results"},
    )
    assert "<html" not in fragment.text
    assert f"#{line['id']}" in fragment.text

    detail = await ops.get(f"/staff/remittance/lines/{line['id']}")
    assert numbers[1] in detail.text
    token = csrf_from(detail.text)
    bad = await ops.post(
        f"/staff/remittance/lines/{line['id']}/apply",
        data={"invoice-1": numbers[1], "amount-1": "99999.00", "_csrf_token": token},
    )
    assert bad.status_code == 422
    assert "exceeds" in unescape(bad.text), unescape(bad.text)[bad.text.find("<main") :][:3000]
    accepted = await ops.post(
        f"/staff/remittance/lines/{line['id']}/accept", data={"_csrf_token": token}
    )
    assert accepted.status_code == 303
    after = await ops.get(accepted.headers["location"])
    assert "Applied: the payment is recorded" in after.text
    paid = await Invoice.select(Invoice.status).where(Invoice.id.is_in(ids))
    assert {r["status"] for r in paid} == {"paid"}


async def test_roles_support_out_auditor_read_only(signed_in) -> None:
    support, _ = await signed_in(StaffRole.SUPPORT_AGENT)
    assert (await support.get("/staff/remittance")).status_code == 403
    assert (await support.get("/staff/remittance/import")).status_code == 403
    auditor, _ = await signed_in(StaffRole.AUDITOR)
    page = await auditor.get("/staff/remittance/import")
    assert page.status_code == 200
    assert "Read-only" in page.text
    assert 'data-testid="import-form"' not in page.text
    response = await upload_as(auditor, page.text)
    assert response.status_code == 403
    settings = await auditor.get("/staff/remittance/settings")
    assert settings.status_code == 200
    assert 'data-testid="settings-form"' not in settings.text
    admin, _ = await signed_in(StaffRole.FINANCE_ADMIN)
    page = await admin.get("/staff/remittance/settings")
    bad = await admin.post(
        "/staff/remittance/settings",
        data={"config": '{"rules": ["astrology"]}', "_csrf_token": csrf_from(page.text)},
    )
    assert bad.status_code == 422
    assert "rules must be a list" in unescape(bad.text)


async def upload_as(client: httpx.AsyncClient, page: str) -> httpx.Response:
    token = csrf_from(page)
    return await client.post(
        "/staff/remittance/import",
        data={"format": "camt053", "_csrf_token": token},
        files={"file": ("s.xml", camt(f"AUD-{uuid.uuid4().hex[:6]}", []), "application/xml")},
    )


async def test_unapply_from_the_line_page(signed_in) -> None:
    ids, numbers, tag = await own_invoices(("80.00",))
    ops, _ = await signed_in(StaffRole.COLLECTIONS)
    iban = f"DE88{uuid.uuid4().int % 10**18:018d}"
    response = await upload(ops, camt(f"UNAPPLY-{tag}", [("80.00", numbers[0], iban)]))
    assert response.status_code == 200
    line = await StatementLine.select().where(StatementLine.reference == numbers[0]).first()
    assert line["status"] == "auto_applied"
    page = await ops.get(f"/staff/remittance/lines/{line['id']}")
    token = csrf_from(page.text)
    refused = await ops.post(
        f"/staff/remittance/lines/{line['id']}/unapply", data={"reason": " ", "_csrf_token": token}
    )
    assert refused.status_code == 422
    assert "Give a reason" in refused.text
    done = await ops.post(
        f"/staff/remittance/lines/{line['id']}/unapply",
        data={"reason": "paid by the parent company", "_csrf_token": token},
    )
    assert done.status_code == 303
    after = await ops.get(done.headers["location"])
    assert "Unapplied: the invoices are open again" in after.text
    assert f'href="/staff/cash/payments/{line["payment_id"]}"' in after.text
    assert "paid by the parent company" in unescape(after.text)
    row = (
        await Invoice.select(Invoice.status, Invoice.balance_minor)
        .where(Invoice.id == ids[0])
        .first()
    )
    assert (row["status"], row["balance_minor"]) == ("open", 8000)


async def test_csv_mapping_form_and_csv_import(signed_in) -> None:
    ids, numbers, tag = await own_invoices(("12.34",))
    ops, _ = await signed_in(StaffRole.BILLING_OPS)
    page = await ops.get("/staff/remittance/mappings")
    token = csrf_from(page.text)
    fields = {
        "name": f"Bank {tag}",
        "delimiter": ";",
        "has_header": "true",
        "date_format": "%d.%m.%Y",
        "decimal_separator": ",",
        "sign_convention": "plus_is_credit",
        "default_currency": "USD",
        "col-value_date": "Datum",
        "col-reference": "Zweck",
        "_csrf_token": token,
    }
    missing_amount = await ops.post("/staff/remittance/mappings", data=fields)
    assert missing_amount.status_code == 422
    assert "Map the amount column." in missing_amount.text
    saved = await ops.post("/staff/remittance/mappings", data={**fields, "col-amount": "Betrag"})
    assert saved.status_code == 303
    listing = await ops.get(saved.headers["location"])
    assert f"Bank {tag}" in listing.text
    mapping_id = re.search(
        rf'<option value="(\d+)"[^>]*>Bank {tag}<', (await ops.get("/staff/remittance/import")).text
    )
    assert mapping_id is not None
    csv_data = f"Datum;Betrag;Zweck\n20.11.2026;12,34;{numbers[0]} {tag}\n".encode()
    token = csrf_from((await ops.get("/staff/remittance/import")).text)
    no_mapping = await ops.post(
        "/staff/remittance/import",
        data={"format": "csv", "mapping": "", "_csrf_token": token},
        files={"file": ("s.csv", csv_data, "text/csv")},
    )
    assert no_mapping.status_code == 422
    assert "Choose the CSV column mapping." in no_mapping.text
    imported = await ops.post(
        "/staff/remittance/import",
        data={"format": "csv", "mapping": mapping_id.group(1), "_csrf_token": token},
        files={"file": ("s.csv", csv_data, "text/csv")},
    )
    assert imported.status_code == 200
    assert "<strong>1</strong> applied automatically" in imported.text
    row = await Invoice.select(Invoice.status).where(Invoice.id == ids[0]).first()
    assert row["status"] == "paid"
