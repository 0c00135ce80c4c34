"""A customer group to pay invoices of, a Stripe double of this area's own, and the
first checks of creating attempts (validation, scope, roles, approval thresholds).

Other payments test modules import ``world``/``pay_double`` from here. The double is this
area's own (module scope) and reset before each test: our attempt ids restart with the
emptied test database, so the idempotency keys ``attempt-{id}-…`` would otherwise meet
the keys of an earlier test.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import requests

from core.audit.log import Actor
from core.errors import NotFound, ValidationFailed
from core.identity.passwords import hash_password
from core.identity.roles import CustomerRole
from core.identity.scope import load_scope
from core.identity.services import (
    create_billing_account,
    create_issuing_entity,
    create_organization,
    create_user,
    grant_role,
)
from core.identity.tables import CustomerOrganization, User
from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference
from core.payments import faults, gateway
from core.payments.attempts import NotPermitted, PayItem, create_attempt
from core.payments.tables import PaymentAttempt
from core.wallet.tables import SavedPaymentMethod, StripeCustomer
from stripe_double import Config, RunningDouble, start_in_thread
from tests.conftest import STRIPE_TEST_KEY, STRIPE_TEST_WEBHOOK_SECRET
from tests.integration.factories import SYSTEM, lines

PASSWORD = "correct horse battery staple"


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


THRESHOLD = 100_000  # 1,000.00 in the attempt's currency


@dataclass
class World:
    root: int
    child: int
    usd: int  # billing account at the root (USD)
    usd_child: int  # billing account at the child (USD)
    eur: int  # billing account at the child (EUR)
    payer: int
    approver: int
    approver2: int
    viewer: int
    invoices: dict[str, int]  # name -> id
    stripe_customer: str
    payment_method: str
    other_root: int
    other_invoice: int


def configure_gateway(url: str, base_url: str = "http://127.0.0.1:1") -> None:
    gateway.configure(
        SimpleNamespace(
            stripe_api_key=STRIPE_TEST_KEY,
            stripe_api_base=url,
            stripe_webhook_secret=STRIPE_TEST_WEBHOOK_SECRET,
            base_url=base_url,
        )
    )


def control(url: str, path: str, payload: dict | None = None) -> dict:
    session = requests.Session()
    session.trust_env = False
    if payload is None and path.startswith("/_test/state"):
        response = session.get(url + path, timeout=30)
    else:
        response = session.post(url + path, json=payload or {}, timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def pay_double() -> Iterator[RunningDouble]:
    running = start_in_thread(config=Config(webhook_mode="manual", webhook_retry_delays=[0.05]))
    yield running
    running.stop()


@pytest.fixture
def double(pay_double: RunningDouble) -> Iterator[RunningDouble]:
    control(pay_double.url, "/_test/reset")
    control(pay_double.url, "/_test/config", {"latency": 0, "webhook_mode": "manual"})
    configure_gateway(pay_double.url)
    faults.disarm_all()
    yield pay_double
    faults.disarm_all()


def succeeded_charges(url: str) -> int:
    return int(control(url, "/_test/state")["charges"]["succeeded"])


async def invoice(account: int, amount: str) -> int:
    inv = await create_draft(account, lines(amount, rate="0"), SYSTEM)
    await finalize(inv, SYSTEM)
    return inv


async def stripe_customer(organization: int, name: str) -> str:
    """A customer at the configured Stripe (the double) for the group, remembered."""
    customer = gateway.stripe_client().v1.customers.create(params={"name": name})
    await StripeCustomer.insert(
        StripeCustomer(
            organization=organization, stripe_customer=customer.id, created_at=datetime.now(UTC)
        )
    )
    return customer.id


async def save_card(
    organization: int, customer: str, token: str, last4: str, *, default: bool = True
) -> tuple[str, int]:
    """A test card (``tok_visa``, ``tok_threeDSecure2Required``…) attached to the Stripe
    customer and saved for the group: (payment method id, saved method row id)."""
    client = gateway.stripe_client()
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {"token": token}})
    client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    [row] = await SavedPaymentMethod.insert(
        SavedPaymentMethod(
            organization=organization,
            stripe_payment_method=pm.id,
            stripe_customer=customer,
            brand="visa",
            last4=last4,
            exp_month=12,
            exp_year=2030,
            is_default=default,
            created_at=datetime.now(UTC),
        )
    )
    return pm.id, int(row["id"])


async def build_world(double_url: str) -> World:
    us = await create_issuing_entity(
        code="US", name="Acme", legal_name="Acme Inc.", country="US", functional_currency="USD"
    )
    de = await create_issuing_entity(
        code="DE", name="Acme", legal_name="Acme GmbH", country="DE", functional_currency="EUR"
    )
    root = await create_organization(name="Pay Group")
    child = await create_organization(name="Pay Europe", parent_id=root)
    await CustomerOrganization.update(
        {CustomerOrganization.approval_threshold_minor: THRESHOLD}
    ).where(CustomerOrganization.id == root)

    async def account(code: str, org: int, entity: int, cur: str) -> int:
        return await create_billing_account(
            code=code, name=code, organization_id=org, issuing_entity_id=entity, currency_code=cur
        )

    usd = await account("PAY-US", root, us, "USD")
    usd_child = await account("PAY-EU-USD", child, us, "USD")
    eur = await account("PAY-EU", child, de, "EUR")
    other_root = await create_organization(name="Other Co")
    other_account = await account("OTHER-1", other_root, us, "USD")

    async def user(email: str, role: CustomerRole, node: int) -> int:
        uid = await create_user(email=email, name=email.split("@")[0].title(), organization_id=root)
        # One argon2 hash for every test user (hashing is deliberately slow).
        await User.update({User.password_hash: password_hash()}).where(User.id == uid)
        await grant_role(uid, node, role, SYSTEM)
        return uid

    payer = await user("payer@pay.example", CustomerRole.PAYER, root)
    approver = await user("approver@pay.example", CustomerRole.APPROVER, root)
    approver2 = await user("approver2@pay.example", CustomerRole.APPROVER, root)
    viewer = await user("viewer@pay.example", CustomerRole.VIEWER, root)
    invoices = {
        "a": await invoice(usd, "100.00"),
        "b": await invoice(usd, "250.00"),
        "c": await invoice(usd_child, "75.50"),
        "big": await invoice(usd, "5000.00"),
        "eur": await invoice(eur, "80.00"),
    }
    other_invoice = await invoice(other_account, "60.00")
    customer = await stripe_customer(root, "Pay Group")
    pm, _ = await save_card(root, customer, "tok_visa", "4242")
    return World(
        root,
        child,
        usd,
        usd_child,
        eur,
        payer,
        approver,
        approver2,
        viewer,
        invoices,
        customer,
        pm,
        other_root,
        other_invoice,
    )


@pytest.fixture
async def world(db, double) -> World:
    return await build_world(double.url)


async def assert_books() -> None:
    """The ledger balances and AR equals the sum of open invoice balances."""
    assert await trial_balance_difference() == 0
    for code in ("USD", "EUR"):
        rows = await Invoice.select(Invoice.balance_minor).where(
            (Invoice.status == "open") & (Invoice.currency == code)
        )
        assert (await account_balances(code)).get(acct.AR, 0) == sum(
            r["balance_minor"] for r in rows
        )


ACTOR = Actor(type="customer", id="tests")


async def test_attempt_validation_scope_and_roles(world: World) -> None:
    inv = world.invoices
    payer_scope = await load_scope(world.payer)
    ok = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(inv["a"], 10000), PayItem(inv["c"], 5000)],
        kind="checkout",
        user_id=world.payer,
        actor=ACTOR,
        scope=payer_scope,
    )
    assert (ok.status, ok.currency, ok.amount_minor, ok.approval_required) == (
        "ready",
        "USD",
        15000,
        False,
    )
    # Invoice a is now fully in flight: another attempt for it is refused.
    with pytest.raises(ValidationFailed) as exc:
        await create_attempt(
            organization_root_id=world.root,
            items=[PayItem(inv["a"], 1)],
            kind="checkout",
            user_id=world.payer,
            actor=ACTOR,
            scope=payer_scope,
        )
    assert "in progress" in exc.value.errors[f"amount_{inv['a']}"]
    with pytest.raises(ValidationFailed) as exc:
        await create_attempt(
            organization_root_id=world.root,
            items=[PayItem(inv["b"], 25001)],
            kind="checkout",
            user_id=world.payer,
            actor=ACTOR,
            scope=payer_scope,
        )
    assert "exceeds the open balance" in exc.value.errors[f"amount_{inv['b']}"]
    with pytest.raises(ValidationFailed) as exc:
        await create_attempt(
            organization_root_id=world.root,
            items=[PayItem(inv["b"], 100), PayItem(inv["eur"], 100)],
            kind="checkout",
            user_id=world.payer,
            actor=ACTOR,
            scope=payer_scope,
        )
    assert "mixes currencies" in exc.value.errors["currency"]
    with pytest.raises(ValidationFailed):
        await create_attempt(
            organization_root_id=world.root,
            items=[PayItem(inv["b"], 0)],
            kind="checkout",
            user_id=world.payer,
            actor=ACTOR,
            scope=payer_scope,
        )
    # Another group's invoice: not found, whichever root is claimed.
    for root in (world.root, world.other_root):
        with pytest.raises(NotFound):
            await create_attempt(
                organization_root_id=root,
                items=[PayItem(world.other_invoice, 100)],
                kind="checkout",
                user_id=world.payer,
                actor=ACTOR,
                scope=payer_scope,
            )
    # A viewer sees the invoice but may not pay it.
    with pytest.raises(NotPermitted):
        await create_attempt(
            organization_root_id=world.root,
            items=[PayItem(inv["b"], 100)],
            kind="checkout",
            user_id=world.viewer,
            actor=ACTOR,
            scope=await load_scope(world.viewer),
        )
    # Above the root's threshold: waits for approval.
    big = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(inv["big"], THRESHOLD + 1)],
        kind="checkout",
        user_id=world.payer,
        actor=ACTOR,
        scope=payer_scope,
    )
    assert (big.status, big.approval_required) == ("pending_approval", True)
    assert await PaymentAttempt.count() == 2
    await assert_books()
