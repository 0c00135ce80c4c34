"""Cross-tenant crawl: every route (GET and POST) as every customer role of both demo
tenants, with the other tenant's object ids substituted into every path parameter and
form field. Zero successful accesses: no foreign data in any response, no change to any
business table, and every foreign id in a path answers 404.

New routes are picked up automatically; a path parameter the crawl does not know fails
the test with its name, so that every new route states what its ids are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.audit.log import Actor
from core.billing.tables import Subscription
from core.crypto import new_token, token_hash
from core.db import bind_engine
from core.identity.roles import CustomerRole
from core.identity.services import create_user, grant_role
from core.identity.tables import (
    AssistedSession,
    BillingAccount,
    CustomerOrganization,
    Invitation,
    Membership,
    StaffUser,
    User,
)
from core.invoicing.tables import Invoice
from core.payments.tables import Payment, PaymentAttempt
from core.settings import load_settings
from core.usage import keys as usage_keys
from core.wallet.tables import SavedPaymentMethod
from tests.conftest import live_database_url, server_env
from tests.helpers import csrf_from, login
from tests.integration.factories import SYSTEM

PASSWORD = "crawl-password-123"
SKIP_POST = ("/logout", "/login", "/account")  # own-session actions carry no object ids
SKIP_PREFIX = ("/static", "/schema", "/health")


@dataclass
class Tenant:
    root: str
    nodes: list[int] = field(default_factory=list)
    accounts: list[int] = field(default_factory=list)
    invoices: list[int] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    invitations: list[int] = field(default_factory=list)
    assisted: list[int] = field(default_factory=list)  # assisted-session requests
    subscriptions: list[int] = field(default_factory=list)
    payments: list[int] = field(default_factory=list)
    methods: list[int] = field(default_factory=list)  # saved payment methods
    attempts: list[int] = field(default_factory=list)  # payment attempts
    api_keys: list[int] = field(default_factory=list)  # usage/payments API keys
    markers: set[str] = field(default_factory=set)  # strings only this tenant's pages show
    logins: dict[str, str] = field(default_factory=dict)  # role -> email


async def load_tenant(root_name: str) -> Tenant:
    root = await CustomerOrganization.select().where(CustomerOrganization.name == root_name).first()
    nodes = await CustomerOrganization.select().where(
        CustomerOrganization.path.like(root["path"] + "%")
    )
    t = Tenant(root_name, nodes=[n["id"] for n in nodes])
    accounts = await BillingAccount.select().where(BillingAccount.organization.is_in(t.nodes))
    t.accounts = [a["id"] for a in accounts]
    invoices = await Invoice.select(Invoice.id, Invoice.number).where(
        Invoice.billing_account.is_in(t.accounts)
    )
    t.invoices = [i["id"] for i in invoices]
    t.payments = [
        p["id"]
        for p in await Payment.select(Payment.id).where(Payment.billing_account.is_in(t.accounts))
    ]
    t.methods = [
        m["id"]
        for m in await SavedPaymentMethod.select(SavedPaymentMethod.id).where(
            SavedPaymentMethod.organization == root["id"]
        )
    ]
    t.attempts = [
        a["id"]
        for a in await PaymentAttempt.select(PaymentAttempt.id).where(
            PaymentAttempt.organization == root["id"]
        )
    ]
    users = await User.select(User.id, User.email).where(User.organization == root["id"])
    t.users = [u["id"] for u in users]
    t.invitations = [
        i["id"]
        for i in await Invitation.select(Invitation.id).where(
            Invitation.organization.is_in(t.nodes)
        )
    ]
    t.subscriptions = [
        r["id"]
        for r in await Subscription.select(Subscription.id).where(
            Subscription.billing_account.is_in(t.accounts or [-1])
        )
    ]
    t.markers = (
        {n["name"] for n in nodes}
        | {a["name"] for a in accounts}
        | {a["code"] for a in accounts}
        | {i["number"] for i in invoices if i["number"]}
        | {u["email"] for u in users}
    )
    return t


async def ensure_role(tenant: Tenant, role: CustomerRole, email: str, node: int) -> None:
    existing = await User.select(User.id).where(User.email == email).first()
    if existing is None:
        user_id = await create_user(
            email=email,
            name=f"Crawl {role.value}",
            organization_id=tenant.nodes[0],
            password=PASSWORD,
        )
        await grant_role(user_id, node, role, Actor.system("crawl"))
    tenant.logins[role.value] = email


BUSINESS_TABLES = (
    "api_key",
    "saved_payment_method",
    "autopay_enrollment",
    "autopay_charge",
    "receipt_delivery",
    "customer_user",
    "membership",
    "customer_organization",
    "billing_account",
    "invoice",
    "invoice_line",
    "payment",
    "allocation",
    "journal_entry",
    "invitation",
    "sso_connection",
    "external_identity",
    "assisted_session",
    "mfa_factor",
    "recovery_code",
    "password_reset_token",
    "number_series",
    "subscription",
    "subscription_change",
    "pending_charge",
    "product",
    "price",
    "discount",
    "write_off",
    "write_off_rule",
    "allocation_change",
    "cash_refund",
    "discount_terms",
    "settlement_adjustment",
    "settlement_adjustment_tax",
    "exchange_rate",
    "period_lock",
    "invoicing_policy",
    "account_approval_rule",
    "tax_rate",
    "tax_provider_settings",
    "tax_exemption",
    "chargeback",
    "chargeback_reversal",
    "dunning_schedule",
    "dunning_reminder",
    "dunning_pause",
    "promise_to_pay",
    "stripe_reconciliation_run",
    "stripe_balance_txn",
    "reconciliation_difference",
    "bank_statement",
    "bank_statement_line",
    "remittance_csv_mapping",
    "remittance_known_payer",
    "remittance_matching_settings",
    "payment_attempt",
    "payment_attempt_item",
    "idempotency_record",
    "stripe_webhook_event",
    "invoice_run",
    "run_chunk",
    "billed_period",
    "late_usage",
    "billable_metric",
)


async def fingerprint(engine) -> str:
    """A digest of every business table's rows (last_login_at aside), in one query."""
    volatile = "- 'last_login_at' - 'last_used_at'"  # touched by signing in / using keys
    parts = " UNION ALL ".join(
        f"SELECT '{table}' AS t, md5(coalesce(string_agg((to_jsonb(x) {volatile})"
        f"::text, ',' ORDER BY x.id), '')) AS h FROM {table} x"
        for table in BUSINESS_TABLES
    )
    rows = await engine.run_ddl(parts)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row['t']}={row['h']};".encode())
    return digest.hexdigest()


def routes(database: str, tmp: Path) -> list[tuple[str, str, list[str]]]:
    """(method, path template, path parameter names) of every route of the real app."""
    from portal.app import create_app

    app = create_app(load_settings(server_env(database, tmp)))
    found = []
    for route in app.routes:
        if route.path.startswith(SKIP_PREFIX):
            continue
        for method in sorted(getattr(route, "methods", set()) - {"HEAD", "OPTIONS"}):
            found.append((method, route.path, list(route.path_parameters)))
    return found


def foreign_values(other: Tenant) -> dict[str, list[str]]:
    ids = {
        "invoice_id": other.invoices[:3],
        "user_id": other.users[:3],
        "organization_id": other.nodes,
        "node_id": other.nodes,
        "account_id": other.accounts,
        "billing_account_id": other.accounts,
        "invitation_id": other.invitations[:3],
        "assisted_id": other.assisted,
        # Staff-only objects: a customer must not reach them whatever the id.
        "flag_id": [1, 2],
        "subscription_id": other.subscriptions[:3],
        "price_id": [1, 2],  # staff-only catalog routes
        "payment_id": other.payments[:3],
        "method_id": other.methods[:3],
        "attempt_id": other.attempts[:3],
        "allocation_id": [1, 2],
        "refund_id": [1, 2],
        "write_off_id": [1, 2],
        "pause_id": [1, 2],
        "promise_id": [1, 2],
        "chargeback_id": [1, 2],
        "difference_id": [1, 2],
        "line_id": [1, 2],
        "run_id": [1, 2],  # staff-only invoice-run console
        "number": [1, 2],
        "late_id": [1, 2],
        "charge_id": [1, 2],
        # Capability tokens: unguessable by design; a made-up one must reveal nothing.
        "key_id": other.api_keys,
        "token": [new_token()],
    }
    # Out-of-range ids (past int4, past int8) must be a plain 404 too, never a 500.
    for name in (
        "invoice_id",
        "user_id",
        "node_id",
        "invitation_id",
        "payment_id",
        "method_id",
        "attempt_id",
    ):
        ids[name] = [*ids[name], 2**31, 10**20]
    return {k: [str(v) for v in vs] for k, vs in ids.items()}


def form_for(other: Tenant) -> dict[str, str]:
    node, account, user = other.nodes[-1], other.accounts[0], other.users[0]
    invoice = other.invoices[0]
    return {
        "org": str(node),
        "organization": str(node),
        "organization_id": str(node),
        "node": str(node),
        "node_id": str(node),
        "entity": str(node),
        "account": str(account),
        "billing_account_id": str(account),
        "user": str(user),
        "user_id": str(user),
        "invoice": str(invoice),
        "invoice_id": str(invoice),
        "role": "admin",
        "email": "intruder@elsewhere.example",
        "name": "Intruder",
        "access": "act",
        "minutes": "30",
        "next": "/",
    }


@pytest.fixture
async def tenants(demo_db) -> AsyncIterator[tuple[Tenant, Tenant]]:
    globex = await load_tenant("Globex Holdings")
    initech = await load_tenant("Initech Group")
    created: list[str] = []
    for tenant in (globex, initech):  # one pending invitation per tenant to aim at
        if not tenant.invitations:
            inviter = await User.select(User.id).where(User.id.is_in(tenant.users)).first()
            [row] = await Invitation.insert(
                Invitation(
                    email=f"crawl-invitee@{tenant.root.split()[0].lower()}.example",
                    organization=tenant.nodes[0],
                    role="viewer",
                    token_hash=token_hash(new_token()),
                    invited_by=inviter["id"],
                    expires_at=datetime.now(UTC) + timedelta(days=1),
                    created_at=datetime.now(UTC),
                )
            )
            tenant.invitations = [row["id"]]
    for tenant in (globex, initech):  # one active API key per tenant to aim at
        made = await usage_keys.create_key(tenant.nodes[0], "crawl", SYSTEM)
        tenant.api_keys = [made.id]
    agent = await StaffUser.select(StaffUser.id).first()
    for tenant in (globex, initech):  # one waiting assisted-session request per tenant
        [row] = await AssistedSession.insert(
            AssistedSession(
                agent=agent["id"],
                user=tenant.users[0],
                reason="crawl",
                ticket_ref="CRAWL",
                requested_at=datetime.now(UTC),
            )
        )
        tenant.assisted = [row["id"]]
    for tenant, role, email, node in (
        (globex, CustomerRole.APPROVER, "crawl-approver@globex.example", globex.nodes[0]),
        (initech, CustomerRole.ADMIN, "crawl-admin@initech.example", initech.nodes[0]),
        (initech, CustomerRole.PAYER, "crawl-payer@initech.example", initech.nodes[1]),
    ):
        await ensure_role(tenant, role, email, node)
        created.append(email)
    globex.logins |= {
        "admin": "alice@globex.example",
        "payer": "bob@globex.example",
        "viewer": "vera@globex.example",
    }
    initech.logins |= {"approver": "carol@initech.example", "viewer": "dan@initech.example"}
    yield globex, initech
    await AssistedSession.delete().where(
        AssistedSession.id.is_in(globex.assisted + initech.assisted or [-1])
    )
    ids = [r["id"] for r in await User.select(User.id).where(User.email.is_in(created))]
    await Membership.delete().where(Membership.user.is_in(ids or [-1]))
    await User.delete().where(User.id.is_in(ids or [-1]))


async def crawl_as(
    base: str, email: str, other: Tenant, engine, all_routes: list[tuple[str, str, list[str]]]
) -> list[str]:
    problems: list[str] = []
    password = PASSWORD if email.startswith("crawl-") else None
    async with httpx.AsyncClient(base_url=base, timeout=15) as client:
        await (login(client, email, password) if password else login(client, email))
        csrf = csrf_from((await client.get("/invoices")).text)
        values = foreign_values(other)
        form = form_for(other) | {"_csrf_token": csrf}
        for method, template, params in all_routes:
            unknown = [p for p in params if p not in values]
            if unknown:
                problems.append(f"{method} {template}: unknown path parameter(s) {unknown}")
                continue
            if method == "POST" and template.startswith(SKIP_POST):
                continue
            paths = [template]
            for param in params:
                paths = [
                    re.sub(r"\{" + param + r"(:\w+)?\}", v, p) for p in paths for v in values[param]
                ]
            for path in paths:
                before = await fingerprint(engine) if method == "POST" else None
                query = {"org": form["org"], "account": form["account"]}
                response = await client.request(
                    method,
                    path,
                    data=form if method == "POST" else None,
                    params=query if method == "GET" and not params else None,
                )
                leaked = sorted(m for m in other.markers if m in response.text)
                if leaked:
                    problems.append(f"{email} {method} {path}: shows {leaked[:3]}")
                expected = {403, 404} if template.startswith("/staff") else {404}
                if "token" in params:
                    expected = {400, 404, 410}
                if params and response.status_code not in expected:
                    problems.append(
                        f"{email} {method} {path}: {response.status_code}, not {sorted(expected)}"
                    )
                if before is not None and await fingerprint(engine) != before:
                    problems.append(f"{email} {method} {path}: changed business data")
                if response.status_code >= 500:
                    problems.append(f"{email} {method} {path}: {response.status_code}")
    return problems


async def test_no_route_reaches_the_other_tenant(live_server, tenants, demo_db, tmp_path) -> None:
    globex, initech = tenants
    try:
        all_routes = routes(live_database_url(), tmp_path)
    finally:
        bind_engine(demo_db)  # building the app bound its own engine
    assert len(all_routes) > 10
    problems: list[str] = []
    for me, other in ((globex, initech), (initech, globex)):
        for _role, email in sorted(me.logins.items()):
            problems += await crawl_as(live_server.url, email, other, demo_db, all_routes)
    assert not problems, "\n".join(problems)
    covered = {role for t in (globex, initech) for role in t.logins}
    assert covered == {"viewer", "payer", "approver", "admin"}
