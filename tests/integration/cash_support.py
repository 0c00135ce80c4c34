"""Shared by the cash tests: staff actors of each role, invoices and payments built
through the real services, and the books assertion run after every money test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from core.audit.log import Actor
from core.identity.roles import CustomerRole, StaffRole
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_user,
    grant_role,
)
from core.identity.tables import BillingAccount, StaffUser
from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference
from core.payments.allocation import AllocationRequest
from core.payments.services import record_payment
from tests.integration.assisted_support import use_server_keys
from tests.integration.factories import SYSTEM, lines
from tests.integration.test_books import open_balance_sum


@dataclass(frozen=True)
class Crew:
    admin: Actor  # finance_admin
    admin2: Actor  # another finance_admin
    ops: Actor  # billing_ops
    collections: Actor
    auditor: Actor
    support: Actor


async def staff_actor(role: StaffRole) -> Actor:
    """A staff member of ``role`` (no password: service tests act as them directly)."""
    [row] = await StaffUser.insert(
        StaffUser(
            email=f"{role.value}-{uuid.uuid4().hex[:8]}@cash-tests.example",
            name=f"Cash {role.value}",
            role=role.value,
            password_hash="!",
            created_at=datetime.now(UTC),
        )
    )
    return Actor(type="staff", id=str(row["id"]))


async def crew() -> Crew:
    return Crew(
        admin=await staff_actor(StaffRole.FINANCE_ADMIN),
        admin2=await staff_actor(StaffRole.FINANCE_ADMIN),
        ops=await staff_actor(StaffRole.BILLING_OPS),
        collections=await staff_actor(StaffRole.COLLECTIONS),
        auditor=await staff_actor(StaffRole.AUDITOR),
        support=await staff_actor(StaffRole.SUPPORT_AGENT),
    )


async def sibling_account(account: int, code: str) -> int:
    """Another customer's billing account with the same issuing entity and currency."""
    row = await BillingAccount.select().where(BillingAccount.id == account).first()
    org = await create_organization(name=f"Other customer {code}")
    return await create_billing_account(
        code=code,
        name=f"Account {code}",
        organization_id=org,
        issuing_entity_id=row["issuing_entity"],
        currency_code=row["currency"],
        payment_terms_days=14,
    )


async def open_invoice(
    account: int, *amounts: str, rate: str = "0", issue_date: date | None = None
) -> int:
    inv = await create_draft(account, lines(*amounts, rate=rate), SYSTEM)
    await finalize(inv, SYSTEM, issue_date=issue_date)
    return inv


async def pay(
    account: int, amount: int, allocations: list[tuple[int, int]], currency_code: str = "EUR"
) -> int:
    return await record_payment(
        billing_account_id=account,
        amount_minor=amount,
        currency_code=currency_code,
        method="bank_transfer",
        reference=f"wire {uuid.uuid4().hex[:6]}",
        allocations=[AllocationRequest(i, a) for i, a in allocations],
        actor=SYSTEM,
    )


async def assert_books(*currencies: str) -> dict[str, int]:
    """The ledger balances and AR equals the open invoice balances, per currency."""
    assert await trial_balance_difference() == 0
    balances: dict[str, int] = {}
    for code in currencies:
        balances = await account_balances(code)
        assert balances.get(acct.AR, 0) == await open_balance_sum(code), code
    return balances


SEED = Actor.system("cash-page-tests")
PASSWORD = "correct horse battery staple"  # the customer user of ``build``


@dataclass
class World:
    account: int
    code: str
    invoices: list[int]
    numbers: list[str]
    payment: int
    customer_email: str


async def build(tmp: Path) -> World:
    use_server_keys(tmp)
    tag = uuid.uuid4().hex[:6]
    entity = await create_issuing_entity(
        code=f"C{tag}",
        name="Cash tests",
        legal_name="Cash Tests Inc.",
        country="US",
        functional_currency="USD",
    )
    org = await create_organization(name=f"Cash customer {tag}")
    account = await create_billing_account(
        code=f"CASH-{tag}",
        name=f"Cash customer {tag}",
        organization_id=org,
        issuing_entity_id=entity,
        currency_code="USD",
        payment_terms_days=30,
    )
    invoices = [await open_invoice(account, amount, rate="0.1") for amount in ("100.00", "50.00")]
    payment = await pay(account, 15000, [], currency_code="USD")  # all unapplied
    email = f"viewer-{tag}@cash-tests.example"
    user = await create_user(
        email=email, name="Cash Viewer", organization_id=org, password=PASSWORD
    )
    await grant_role(user, org, CustomerRole.VIEWER, SEED)
    numbers = [
        (await Invoice.select(Invoice.number).where(Invoice.id == i).first())["number"]
        for i in invoices
    ]
    return World(account, f"CASH-{tag}", invoices, numbers, payment, email)
