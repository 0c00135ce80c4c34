"""Builders for the finalization / FX / tax tests: drafts inserted in bulk (fast), an
issuing entity per test, book checks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from core.audit.log import Actor, verify_chain
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
)
from core.invoicing.tables import Invoice, InvoiceLine
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference

CREATOR = Actor(type="staff", id="1")
APPROVER = Actor(type="staff", id="2")


async def entity_account(
    *,
    entity: str = "DE",
    country: str = "DE",
    functional: str = "EUR",
    currency_code: str = "EUR",
    buyer_country: str = "DE",
    buyer_vat: str = "",
    code: str = "ACME-1",
) -> tuple[int, int]:
    """(issuing entity id, billing account id); the entity is created if missing."""
    from core.identity.tables import IssuingEntity

    row = await IssuingEntity.select(IssuingEntity.id).where(IssuingEntity.code == entity).first()
    if row:
        entity_id = int(row["id"])
    else:
        entity_id = await create_issuing_entity(
            code=entity,
            name=f"Acme {entity}",
            legal_name=f"Acme {entity}",
            country=country,
            functional_currency=functional,
        )
    org = await create_organization(
        name=f"Customer {code}", country=buyer_country, tax_id=buyer_vat
    )
    account = await create_billing_account(
        code=code,
        name="Main",
        organization_id=org,
        issuing_entity_id=entity_id,
        currency_code=currency_code,
        payment_terms_days=14,
    )
    return entity_id, account


async def bulk_drafts(
    account: int,
    entity_id: int,
    count: int,
    *,
    currency_code: str = "EUR",
    amount_minor: int = 10000,
    tax_rate: str = "0.19",
    tax_status: str = "calculated",
    created_by: str = "run:1",
    revenue_account: str = "4000",
) -> list[int]:
    """``count`` one-line drafts, inserted in bulk (what an invoice run produces)."""
    tax = int((Decimal(amount_minor) * Decimal(tax_rate)).to_integral_value())
    if tax_status == "pending":
        tax = 0
    now = datetime.now(UTC)
    ids: list[int] = []
    for start in range(0, count, 500):
        n = min(500, count - start)
        rows = await Invoice.insert(
            *[
                Invoice(
                    billing_account=account,
                    issuing_entity=entity_id,
                    status="draft",
                    currency=currency_code,
                    subtotal_minor=amount_minor,
                    tax_minor=tax,
                    total_minor=amount_minor + tax,
                    balance_minor=amount_minor + tax,
                    created_at=now,
                    created_by=created_by,
                    tax_status=tax_status,
                )
                for _ in range(n)
            ]
        )
        new = [int(r["id"]) for r in rows]
        await InvoiceLine.insert(
            *[
                InvoiceLine(
                    invoice=i,
                    position=1,
                    description="Subscription",
                    quantity=Decimal(1),
                    unit_price=Decimal(amount_minor) / 100,
                    amount_minor=amount_minor,
                    tax_rate=Decimal(tax_rate) if tax_status != "pending" else Decimal(0),
                    tax_minor=tax,
                    tax_code="STD",
                    kind="recurring",
                    revenue_account=revenue_account,
                )
                for i in new
            ]
        )
        ids += new
    return ids


async def assert_books_balanced(currency_code: str) -> None:
    """Debits equal credits; AR equals the open invoices' balances; audit chain intact."""
    assert await trial_balance_difference() == 0
    rows = await Invoice.select(Invoice.balance_minor).where(
        (Invoice.status == "open") & (Invoice.currency == currency_code)
    )
    ar = (await account_balances(currency_code)).get(acct.AR, 0)
    assert ar == sum(r["balance_minor"] for r in rows)
    assert (await verify_chain()).ok
