"""Saved payment methods of a customer group: the group's Stripe customer, adding a
method through Stripe Checkout in setup mode (card data is typed on Stripe's page, never
ours), recording it from Stripe's own answer (idempotent: the return page and the
webhook may both do it, in any order), removing it (detached at Stripe, our row kept
with ``removed_at``) and choosing the default.

Who may manage methods is decided by the caller (``core.wallet.rules.may_manage_methods``
over the user's roles); the services check that ids belong to the given group.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
import structlog

from core.audit.log import Actor, AuditRecord, record
from core.db import advisory_lock, for_update, transaction
from core.errors import NotFound, ValidationFailed
from core.identity.tables import BillingAccount, CustomerOrganization
from core.payments import gateway
from core.wallet.rules import method_label
from core.wallet.tables import AutopayEnrollment, SavedPaymentMethod, StripeCustomer

log = structlog.get_logger("ledgerline.wallet")

MAX_ID = 2**31 - 1
# Advisory-lock keys of this area: a fixed high prefix plus the organization id.
_LOCK_PREFIX = 0x57A1 << 32


@dataclass(frozen=True, slots=True)
class SavedMethod:
    id: int
    stripe_payment_method: str
    stripe_customer: str
    kind: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    is_default: bool

    @property
    def label(self) -> str:
        return method_label(self.brand, self.last4)

    @property
    def expiry(self) -> str:
        if not self.exp_month or not self.exp_year:
            return ""
        return f"{self.exp_month:02d}/{self.exp_year}"


async def saved_methods(root_org_id: int) -> list[SavedMethod]:
    """The group's methods that are not removed, default first."""
    rows = await (
        SavedPaymentMethod.select(
            SavedPaymentMethod.id,
            SavedPaymentMethod.stripe_payment_method,
            SavedPaymentMethod.stripe_customer,
            SavedPaymentMethod.kind,
            SavedPaymentMethod.brand,
            SavedPaymentMethod.last4,
            SavedPaymentMethod.exp_month,
            SavedPaymentMethod.exp_year,
            SavedPaymentMethod.is_default,
        )
        .where(
            (SavedPaymentMethod.organization == root_org_id)
            & SavedPaymentMethod.removed_at.is_null()
        )
        .order_by(SavedPaymentMethod.is_default, ascending=False)
        .order_by(SavedPaymentMethod.id)
    )
    return [SavedMethod(**r) for r in rows]


async def account_root(billing_account_id: int) -> int | None:
    row = (
        await BillingAccount.select(BillingAccount.organization.root_id.as_alias("root"))
        .where(BillingAccount.id == billing_account_id)
        .first()
    )
    return None if row is None else row["root"]


async def ensure_stripe_customer(root_org_id: int) -> str:
    """The group's Stripe customer, created once. The idempotency key comes from the
    organization id, so two racing first uses create one customer at Stripe; the unique
    index on ``organization`` keeps one row here."""
    existing = await StripeCustomer.select(StripeCustomer.stripe_customer).where(
        StripeCustomer.organization == root_org_id
    )
    if existing:
        return str(existing[0]["stripe_customer"])
    org = (
        await CustomerOrganization.select(CustomerOrganization.name)
        .where(CustomerOrganization.id == root_org_id)
        .first()
    )
    if org is None:
        raise NotFound("organization")
    client = gateway.stripe_client()
    customer = await gateway.call(
        client.v1.customers.create,
        params={
            "name": org["name"],
            "metadata": {"ledgerline_organization": str(root_org_id)},
        },
        options={"idempotency_key": f"organization-{root_org_id}-customer"},
    )
    await StripeCustomer.insert(
        StripeCustomer(
            organization=root_org_id,
            stripe_customer=customer.id,
            created_at=datetime.now(UTC),
        )
    ).on_conflict(action="DO NOTHING")
    row = (
        await StripeCustomer.select(StripeCustomer.stripe_customer)
        .where(StripeCustomer.organization == root_org_id)
        .first()
    )
    assert row is not None
    return str(row["stripe_customer"])


async def start_setup(*, root_org_id: int, user_id: int, base_url: str, actor: Actor) -> str:
    """Open a Stripe Checkout session in setup mode for the group; returns its URL (the
    customer types the card there). Coming back, ``complete_setup_session`` records it."""
    customer = await ensure_stripe_customer(root_org_id)
    meta = {"ledgerline_organization": str(root_org_id), "ledgerline_user": str(user_id)}
    client = gateway.stripe_client()
    session = await gateway.call(
        client.v1.checkout.sessions.create,
        params={
            "mode": "setup",
            "customer": customer,
            "payment_method_types": ["card"],
            "success_url": f"{base_url}/wallet/methods/added?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{base_url}/wallet/methods?notice=canceled",
            "metadata": meta,
            "setup_intent_data": {"metadata": meta},
        },
        # Each visit to "Add" is a new session; the key still makes a network retry safe.
        options={"idempotency_key": f"organization-{root_org_id}-setup-{uuid.uuid4().hex}"},
    )
    await record(
        AuditRecord(
            actor,
            "payment_method.setup_started",
            "organization",
            root_org_id,
            data={"checkout_session": session.id},
        )
    )
    return str(session.url)


async def complete_setup_session(session_id: str, *, root_org_id: int | None) -> SavedMethod | None:
    """After Checkout in setup mode: re-read the session from Stripe and record its
    method. With ``root_org_id`` (the return page), a session of another group is
    NotFound. Returns None while the setup has not succeeded."""
    if not session_id.startswith("cs_") or len(session_id) > 200:
        raise NotFound("checkout session")
    client = gateway.stripe_client()
    try:
        session = await gateway.call(client.v1.checkout.sessions.retrieve, session_id)
    except stripe.InvalidRequestError as exc:
        raise NotFound("checkout session") from exc
    data = gateway.as_dict(session)
    if data.get("mode") != "setup":
        raise NotFound("checkout session")
    if root_org_id is not None:
        mine = await StripeCustomer.select(StripeCustomer.stripe_customer).where(
            StripeCustomer.organization == root_org_id
        )
        if not mine or mine[0]["stripe_customer"] != _id(data.get("customer")):
            raise NotFound("checkout session")
    seti_id = _id(data.get("setup_intent"))
    if data.get("status") != "complete" or not seti_id:
        return None
    return await record_setup_intent(seti_id)


def _id(value: Any) -> str:
    """A Stripe reference as an id, whether expanded (an object) or not."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _card_details(pm: dict[str, Any]) -> dict[str, Any]:
    kind = pm.get("type") or "card"
    details = pm.get(kind) or {}
    return {
        "kind": kind[:16],
        "brand": str(details.get("brand") or details.get("bank_name") or "")[:32],
        "last4": str(details.get("last4") or "")[:4],
        "exp_month": details.get("exp_month"),
        "exp_year": details.get("exp_year"),
    }


async def record_setup_intent(setup_intent_id: str) -> SavedMethod | None:
    """Record the method of a succeeded SetupIntent, reading everything from Stripe (a
    webhook's payload is never trusted as current). Idempotent: a method already saved
    is returned as it is. Unknown customers and unfinished setups are ignored (None)."""
    client = gateway.stripe_client()
    seti = gateway.as_dict(await gateway.call(client.v1.setup_intents.retrieve, setup_intent_id))
    customer, pm_id = _id(seti.get("customer")), _id(seti.get("payment_method"))
    if seti.get("status") != "succeeded" or not pm_id or not customer:
        return None
    owner = (
        await StripeCustomer.select(StripeCustomer.organization)
        .where(StripeCustomer.stripe_customer == customer)
        .first()
    )
    if owner is None:
        log.info("setup intent of an unknown customer ignored", setup_intent=setup_intent_id)
        return None
    root = int(owner["organization"])
    pm = gateway.as_dict(await gateway.call(client.v1.payment_methods.retrieve, pm_id))
    if _id(pm.get("customer")) != customer:
        log.warning("payment method not attached to the customer", payment_method=pm_id)
        return None
    user_raw = str((seti.get("metadata") or {}).get("ledgerline_user", ""))
    user_id = int(user_raw) if user_raw.isdigit() and int(user_raw) <= MAX_ID else None
    details = _card_details(pm)
    now = datetime.now(UTC)
    async with transaction():
        await advisory_lock(_LOCK_PREFIX + root)
        existing = (
            await SavedPaymentMethod.select(SavedPaymentMethod.id)
            .where(SavedPaymentMethod.stripe_payment_method == pm_id)
            .first()
        )
        if existing is None:
            has_default = await SavedPaymentMethod.exists().where(
                (SavedPaymentMethod.organization == root)
                & SavedPaymentMethod.is_default.eq(True)
                & SavedPaymentMethod.removed_at.is_null()
            )
            [row] = await SavedPaymentMethod.insert(
                SavedPaymentMethod(
                    organization=root,
                    stripe_payment_method=pm_id,
                    stripe_customer=customer,
                    is_default=not has_default,
                    created_by_user=user_id,
                    created_at=now,
                    **details,
                )
            )
            await record(
                AuditRecord(
                    Actor(type="customer", id=str(user_id)) if user_id else Actor.system("stripe"),
                    "payment_method.saved",
                    "saved_payment_method",
                    row["id"],
                    data={
                        "organization": root,
                        "setup_intent": setup_intent_id,
                        "label": method_label(details["brand"], details["last4"]),
                        "default": not has_default,
                    },
                )
            )
    methods = {m.stripe_payment_method: m for m in await saved_methods(root)}
    return methods.get(pm_id)


async def _locked_method(root_org_id: int, method_id: int) -> dict[str, Any]:
    if not 0 < method_id <= MAX_ID:
        raise NotFound("payment method")
    row = await for_update(
        SavedPaymentMethod.select().where(
            (SavedPaymentMethod.id == method_id)
            & (SavedPaymentMethod.organization == root_org_id)
            & SavedPaymentMethod.removed_at.is_null()
        )
    )
    if not row:
        raise NotFound("payment method")
    return row[0]


async def remove_method(*, root_org_id: int, method_id: int, actor: Actor) -> None:
    """Remove a saved method: refused while autopay uses it; otherwise marked removed
    here (the next method becomes the default) and detached at Stripe."""
    now = datetime.now(UTC)
    async with transaction():
        await advisory_lock(_LOCK_PREFIX + root_org_id)
        method = await _locked_method(root_org_id, method_id)
        users = await AutopayEnrollment.select(
            AutopayEnrollment.billing_account.name.as_alias("account")
        ).where((AutopayEnrollment.payment_method == method_id) & AutopayEnrollment.active.eq(True))
        if users:
            names = ", ".join(sorted(u["account"] for u in users))
            raise ValidationFailed(
                {
                    "method": f"Autopay for {names} uses this method. Choose another method "
                    "for autopay or turn autopay off first."
                }
            )
        await SavedPaymentMethod.update(
            {SavedPaymentMethod.removed_at: now, SavedPaymentMethod.is_default: False}
        ).where(SavedPaymentMethod.id == method_id)
        if method["is_default"]:
            successor = (
                await SavedPaymentMethod.select(SavedPaymentMethod.id)
                .where(
                    (SavedPaymentMethod.organization == root_org_id)
                    & SavedPaymentMethod.removed_at.is_null()
                )
                .order_by(SavedPaymentMethod.id, ascending=False)
                .first()
            )
            if successor is not None:
                await SavedPaymentMethod.update({SavedPaymentMethod.is_default: True}).where(
                    SavedPaymentMethod.id == successor["id"]
                )
        await record(
            AuditRecord(
                actor,
                "payment_method.removed",
                "saved_payment_method",
                method_id,
                data={"label": method_label(method["brand"], method["last4"])},
            )
        )
    client = gateway.stripe_client()
    try:
        await gateway.call(
            client.v1.payment_methods.detach,
            method["stripe_payment_method"],
            options={"idempotency_key": f"payment-method-{method_id}-detach"},
        )
    except stripe.StripeError as exc:  # unusable from our side already; staff can retry
        log.warning("detaching at Stripe failed", method_id=method_id, error=str(exc))


async def set_default(*, root_org_id: int, method_id: int, actor: Actor) -> None:
    async with transaction():
        await advisory_lock(_LOCK_PREFIX + root_org_id)
        method = await _locked_method(root_org_id, method_id)
        if method["is_default"]:
            return
        await SavedPaymentMethod.update({SavedPaymentMethod.is_default: False}).where(
            (SavedPaymentMethod.organization == root_org_id)
            & SavedPaymentMethod.is_default.eq(True)
        )
        await SavedPaymentMethod.update({SavedPaymentMethod.is_default: True}).where(
            SavedPaymentMethod.id == method_id
        )
        await record(
            AuditRecord(
                actor,
                "payment_method.default_set",
                "saved_payment_method",
                method_id,
                data={"label": method_label(method["brand"], method["last4"])},
            )
        )
