"""Tax regions: a customer organization's region (state/province) selects the regional
rate of the rules provider, end to end through finalization (US/CA 7.25 %, a saved NY
override, no region → the country's rate); staff set it on the finance tax page (bad
input → the field's message, nothing changed)."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from core.audit.tables import AuditEvent
from core.errors import ValidationFailed
from core.identity.roles import StaffRole
from core.identity.services import create_billing_account, create_organization
from core.identity.tables import CustomerOrganization
from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import Invoice, InvoiceLine
from core.ledger import accounts as acct
from core.ledger.posting import account_balances
from core.tax.services import set_organization_region, set_rate
from tests.integration.factories import SYSTEM, lines
from tests.integration.finance_support import APPROVER, assert_books_balanced, entity_account
from tests.integration.test_finalize_pages import form_post, signed_in, team, text

__all__ = ["signed_in", "team"]  # fixtures used below

ISSUED = date(2026, 6, 1)


async def us_account(code: str, region: str) -> int:
    """A USD billing account of a US customer of the US entity, with ``region``."""
    entity, _ = await entity_account(
        entity="US", country="US", functional="USD", currency_code="USD", code=f"{code}-SEED"
    )
    org = await create_organization(name=f"Customer {code}", country="US")
    account = await create_billing_account(
        code=code, name=code, organization_id=org, issuing_entity_id=entity, currency_code="USD"
    )
    if region:
        assert await set_organization_region(code, region.lower(), APPROVER) == (org, region)
    return account


async def finalized_tax(account: int) -> tuple[int, str]:
    """Tax of a finalized 1,000.00 USD draft whose tax the provider computes."""
    draft = await create_draft(account, lines("1000.00", rate="0"), SYSTEM, tax_status="pending")
    await finalize(draft, SYSTEM, issue_date=ISSUED)
    inv = await Invoice.select().where(Invoice.id == draft).first()
    [line] = await InvoiceLine.select().where(InvoiceLine.invoice == draft)
    assert inv["status"] == "open"
    return inv["tax_minor"], str(line["tax_rate"])


async def test_regional_rate_applies_through_finalization(db) -> None:
    california = await us_account("US-CA-1", "CA")
    nowhere = await us_account("US-NONE-1", "")
    new_york = await us_account("US-NY-1", "NY")
    await set_rate("US", "NY", "STD", "8.875", "NYC combined", APPROVER)

    assert (await finalized_tax(california))[0] == 7250  # 7.25 % built in for US/CA
    assert (await finalized_tax(nowhere))[0] == 0  # the US country rate
    assert (await finalized_tax(new_york))[0] == 8875  # the saved override for US/NY
    assert (await account_balances("USD"))[acct.TAX_PAYABLE] == -(7250 + 8875)
    await assert_books_balanced("USD")

    events = await AuditEvent.select(AuditEvent.object_id).where(
        AuditEvent.action == "tax.region_set"
    )
    assert len(events) == 2  # CA and NY, each recorded with the previous value


async def test_region_validation_changes_nothing(db) -> None:
    await us_account("US-BAD-1", "")
    with pytest.raises(ValidationFailed) as info:
        await set_organization_region("US-BAD-1", "C-A!", APPROVER)
    assert "region" in info.value.errors
    with pytest.raises(ValidationFailed) as info:
        await set_organization_region("NOPE", "CA", APPROVER)
    assert "account_code" in info.value.errors
    assert not await CustomerOrganization.exists().where(CustomerOrganization.region != "")


async def test_staff_set_the_region_on_the_tax_page(demo_db, signed_in) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    await entity_account(
        entity=f"R{tag}",
        country="US",
        functional="USD",
        currency_code="USD",
        buyer_country="US",
        code=f"REG-{tag}",
    )
    admin = await signed_in(StaffRole.FINANCE_ADMIN)
    page = "/staff/finance/tax"
    shown = await admin.get(page)
    assert 'for="org_region"' in shown.text
    assert "Customer tax regions" in shown.text

    bad = await form_post(
        admin, page, f"{page}/regions", region_account_code=f"REG-{tag}", org_region="C A"
    )
    assert bad.status_code == 422
    assert "region code of up to 8 letters or digits" in text(bad)
    unknown = await form_post(
        admin, page, f"{page}/regions", region_account_code="NOPE-X", org_region="CA"
    )
    assert unknown.status_code == 422
    assert "No billing account has this code." in text(unknown)
    assert f"Customer REG-{tag}: US / CA" not in text(await admin.get(page))

    saved = await form_post(
        admin, page, f"{page}/regions", region_account_code=f"REG-{tag}", org_region="ca"
    )
    assert saved.status_code == 303
    assert f"Customer REG-{tag}: US / CA" in text(await admin.get(page))

    auditor = await signed_in(StaffRole.AUDITOR)
    refused = await form_post(
        auditor, page, f"{page}/regions", region_account_code=f"REG-{tag}", org_region=""
    )
    assert refused.status_code == 403
    # Leave the shared demo database as it was: clear the region again.
    cleared = await form_post(
        admin, page, f"{page}/regions", region_account_code=f"REG-{tag}", org_region=""
    )
    assert cleared.status_code == 303
