"""Demo data for the embedded run, created through the same services the app uses.

Idempotent: if the demo issuing entities exist, nothing is done. Deterministic: a
seeded random generator picks amounts, dates and outcomes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from core.audit.log import Actor
from core.billing.demo import seed_catalog
from core.identity.roles import CustomerRole, StaffRole
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_staff_user,
    create_user,
    grant_role,
)
from core.identity.tables import IssuingEntity
from core.invoicing.rules import LineInput
from core.invoicing.services import create_draft, finalize, mark_uncollectible, void
from core.invoicing.tables import Invoice
from core.ledger.posting import ensure_chart
from core.payments.allocation import AllocationRequest
from core.payments.demo import seed_payment_settings
from core.payments.services import record_payment
from core.payments.tables import Payment

DEMO_PASSWORD = "ledgerline-demo"  # a published demo credential


@dataclass(frozen=True, slots=True)
class DemoLogin:
    email: str
    role: str
    where: str


DEMO_LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin("alice@globex.example", "admin", "Globex Holdings (whole group)"),
    DemoLogin("bob@globex.example", "payer", "Globex North America LLC"),
    DemoLogin("vera@globex.example", "viewer", "Globex Europe GmbH"),
    DemoLogin("carol@initech.example", "approver", "Initech Group (whole group)"),
    DemoLogin("dan@initech.example", "viewer", "Initech Software Inc."),
    DemoLogin("ops@ledgerline.example", "staff: finance_admin", "Ledgerline staff (sets up MFA)"),
)

_PRODUCTS = (
    ("Platform subscription", Decimal("1200.00")),
    ("Additional seats", Decimal("45.00")),
    ("API calls (per 1,000)", Decimal("0.85")),
    ("Premium support", Decimal("350.00")),
    ("Data retention add-on", Decimal("129.50")),
    ("Professional services (hours)", Decimal("180.00")),
)


async def seed_demo(invoices_per_account: int = 75, today: date | None = None) -> bool:
    """Create the demo data set; returns False when it was already there."""
    await ensure_chart()
    if await IssuingEntity.exists().where(IssuingEntity.code == "US"):
        return False
    today = today or datetime.now(UTC).date()
    system = Actor.system("demo-seed")
    rng = random.Random(20261122)

    us = await create_issuing_entity(
        code="US",
        name="Acme Inc.",
        legal_name="Acme Inc.",
        country="US",
        functional_currency="USD",
        tax_registration="EIN 12-3456789",
        address="500 Market Street, San Francisco, CA 94105, United States",
    )
    de = await create_issuing_entity(
        code="DE",
        name="Acme GmbH",
        legal_name="Acme GmbH",
        country="DE",
        functional_currency="EUR",
        tax_registration="DE123456789",
        address="Friedrichstraße 100, 10117 Berlin, Germany",
    )

    accounts: list[tuple[int, str, Decimal]] = []
    groups = {}
    for group, domain in (("Globex", "globex"), ("Initech", "initech")):
        root = await create_organization(
            name=f"{group} Holdings" if group == "Globex" else f"{group} Group", country="US"
        )
        na = await create_organization(
            name=f"{group} North America LLC" if group == "Globex" else f"{group} Software Inc.",
            parent_id=root,
            country="US",
            tax_id="US-" + str(rng.randint(10**7, 10**8)),
        )
        eu = await create_organization(
            name=f"{group} Europe GmbH" if group == "Globex" else f"{group} Deutschland GmbH",
            parent_id=root,
            country="DE",
            tax_id="DE" + str(rng.randint(10**8, 10**9)),
        )
        groups[domain] = (root, na, eu)
        usd = await create_billing_account(
            code=f"{domain.upper()}-US-01",
            name=f"{group} US operations",
            organization_id=na,
            issuing_entity_id=us,
            currency_code="USD",
            timezone="America/New_York",
            payment_terms_days=30,
            bill_to_email=f"ap@{domain}.example",
        )
        eur = await create_billing_account(
            code=f"{domain.upper()}-EU-01",
            name=f"{group} EU operations",
            organization_id=eu,
            issuing_entity_id=de,
            currency_code="EUR",
            timezone="Europe/Berlin",
            payment_terms_days=14,
            bill_to_email=f"kreditoren@{domain}.example",
        )
        accounts += [(usd, "USD", Decimal("0.0825")), (eur, "EUR", Decimal("0.19"))]

    people = (
        ("alice@globex.example", "Alice Admin", "globex", 0, CustomerRole.ADMIN),
        ("bob@globex.example", "Bob Payer", "globex", 1, CustomerRole.PAYER),
        ("vera@globex.example", "Vera Viewer", "globex", 2, CustomerRole.VIEWER),
        ("carol@initech.example", "Carol Approver", "initech", 0, CustomerRole.APPROVER),
        ("dan@initech.example", "Dan Viewer", "initech", 1, CustomerRole.VIEWER),
    )
    for email, name, domain, node, role in people:
        user_id = await create_user(
            email=email, name=name, organization_id=groups[domain][0], password=DEMO_PASSWORD
        )
        await grant_role(user_id, groups[domain][node], role, system)
    await create_staff_user(
        email="ops@ledgerline.example",
        name="Olivia Ops",
        role=StaffRole.FINANCE_ADMIN,
        password=DEMO_PASSWORD,
    )

    for account_id, currency_code, tax_rate in accounts:
        await _seed_invoices(
            rng, account_id, currency_code, tax_rate, invoices_per_account, today, system
        )
    await seed_catalog(system, today)
    await seed_payment_settings()
    return True


async def _seed_invoices(
    rng: random.Random,
    account_id: int,
    currency_code: str,
    tax_rate: Decimal,
    count: int,
    today: date,
    actor: Actor,
) -> None:
    # Issue dates ascend with creation, so numbers run in date order as in real books.
    issue_dates = sorted(today - timedelta(days=rng.randint(0, 200)) for _ in range(count))
    for i, issued in enumerate(issue_dates):
        lines = [
            LineInput(
                description=name,
                quantity=Decimal(rng.choice((1, 1, 2, 5, 10, 25, 120))),
                unit_price=price,
                tax_rate=tax_rate,
                tax_code="STD",
            )
            for name, price in rng.sample(_PRODUCTS, rng.randint(1, 3))
        ]
        invoice_id = await create_draft(account_id, lines, actor, memo=f"Demo invoice {i + 1}")
        if i % 25 == 24:
            continue  # a few drafts stay drafts (customers never see them)
        await finalize(invoice_id, actor, issue_date=issued)
        outcome = rng.random()
        if outcome < 0.40:
            await _pay(account_id, currency_code, invoice_id, None, actor, issued, today)
        elif outcome < 0.55:
            await _pay(account_id, currency_code, invoice_id, Decimal("0.4"), actor, issued, today)
        elif outcome < 0.60:
            await void(invoice_id, actor, reason="issued_in_error")
        elif outcome < 0.64:
            await mark_uncollectible(invoice_id, actor, reason="customer_insolvent")


async def _pay(
    account_id: int,
    currency_code: str,
    invoice_id: int,
    share: Decimal | None,
    actor: Actor,
    issued: date,
    today: date,
) -> None:
    inv = (
        await Invoice.select(Invoice.balance_minor, Invoice.number)
        .where(Invoice.id == invoice_id)
        .first()
    )
    assert inv is not None
    amount = inv["balance_minor"] if share is None else int(inv["balance_minor"] * share)
    if amount <= 0:
        return
    count = await Payment.count()
    await record_payment(
        billing_account_id=account_id,
        amount_minor=amount,
        currency_code=currency_code,
        method="bank_transfer" if count % 3 else "card",
        reference=f"Remittance {inv['number']}",
        allocations=[AllocationRequest(invoice_id, amount)],
        actor=actor,
        received_at=datetime.combine(
            min(issued + timedelta(days=10), today), datetime.min.time(), UTC
        ),
    )
