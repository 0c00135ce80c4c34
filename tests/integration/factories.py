"""Small builders for integration tests, going through the real services."""

from __future__ import annotations

from decimal import Decimal

from core.audit.log import Actor
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
)
from core.invoicing.rules import LineInput

SYSTEM = Actor.system("tests")


async def billing_account(currency_code: str = "EUR", code: str = "ACME-1") -> int:
    entity = await create_issuing_entity(
        code="DE" if currency_code == "EUR" else "US",
        name="Acme",
        legal_name="Acme GmbH",
        country="DE" if currency_code == "EUR" else "US",
        functional_currency=currency_code,
    )
    org = await create_organization(name="Customer AG")
    return await create_billing_account(
        code=code,
        name="Main",
        organization_id=org,
        issuing_entity_id=entity,
        currency_code=currency_code,
        payment_terms_days=14,
    )


def lines(*amounts: str, rate: str = "0.19") -> list[LineInput]:
    return [
        LineInput(f"Item {i}", Decimal(1), Decimal(a), Decimal(rate), "STD")
        for i, a in enumerate(amounts)
    ]
