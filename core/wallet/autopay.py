"""Autopay enrollment: a billing account's open invoices are charged on their due date
to a saved method of the group. Enrolling records the mandate text the user accepted,
verbatim, with its version, the user, the time and the IP address. Changing the method
ends the enrollment and starts a new one (with a new mandate); turning autopay off ends
it. The daily charging run lives in ``core.wallet.autopay_run``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.db import advisory_lock, for_update, transaction
from core.errors import NotFound, ValidationFailed
from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from core.identity.tables import BillingAccount
from core.wallet.methods import MAX_ID, account_root
from core.wallet.rules import MANDATE_VERSION, mandate_text, method_label
from core.wallet.tables import AutopayEnrollment, SavedPaymentMethod

_LOCK_PREFIX = 0x57A2 << 32
GENERIC_METHOD = "saved payment method chosen on the Autopay page"


@dataclass(frozen=True, slots=True)
class AccountAutopay:
    billing_account_id: int
    name: str
    code: str
    currency: str
    organization_name: str
    may_manage: bool
    mandate_text: str
    enrollment_id: int | None = None
    method_id: int | None = None
    method_label: str = ""
    accepted_at: datetime | None = None
    accepted_by: str = ""


async def _account(billing_account_id: int) -> dict[str, Any] | None:
    return (
        await BillingAccount.select(
            BillingAccount.id,
            BillingAccount.name,
            BillingAccount.code,
            BillingAccount.currency,
            BillingAccount.organization.name.as_alias("organization_name"),
            BillingAccount.issuing_entity.legal_name.as_alias("seller"),
        )
        .where(BillingAccount.id == billing_account_id)
        .first()
    )


def account_mandate(account: dict[str, Any]) -> str:
    """The mandate text for an account, exactly as shown and as stored."""
    return mandate_text(
        seller=account["seller"],
        method=GENERIC_METHOD,
        account=f"{account['name']} ({account['code']})",
        currency=account["currency"],
    )


async def autopay_overview(scope: Scope) -> list[AccountAutopay]:
    """Every billing account in scope with its autopay state and mandate text."""
    ids = sorted(scope.billing_account_ids)
    accounts = (
        await BillingAccount.select(
            BillingAccount.id,
            BillingAccount.name,
            BillingAccount.code,
            BillingAccount.currency,
            BillingAccount.organization.name.as_alias("organization_name"),
            BillingAccount.issuing_entity.legal_name.as_alias("seller"),
        )
        .where(BillingAccount.id.is_in(ids or [-1]))
        .order_by(BillingAccount.name)
    )
    enrollments = {
        e["billing_account"]: e
        for e in await AutopayEnrollment.select(
            AutopayEnrollment.id,
            AutopayEnrollment.billing_account,
            AutopayEnrollment.payment_method,
            AutopayEnrollment.payment_method.brand.as_alias("brand"),
            AutopayEnrollment.payment_method.last4.as_alias("last4"),
            AutopayEnrollment.accepted_at,
            AutopayEnrollment.accepted_by_user.name.as_alias("accepted_by"),
        ).where(
            AutopayEnrollment.billing_account.is_in(ids or [-1]) & AutopayEnrollment.active.eq(True)
        )
    }
    result = []
    for a in accounts:
        e = enrollments.get(a["id"])
        result.append(
            AccountAutopay(
                billing_account_id=a["id"],
                name=a["name"],
                code=a["code"],
                currency=a["currency"],
                organization_name=a["organization_name"],
                may_manage=scope.may(CustomerRole.PAYER, a["id"]),
                mandate_text=account_mandate(a),
                enrollment_id=e["id"] if e else None,
                method_id=e["payment_method"] if e else None,
                method_label=method_label(e["brand"], e["last4"]) if e else "",
                accepted_at=e["accepted_at"] if e else None,
                accepted_by=e["accepted_by"] if e else "",
            )
        )
    return result


def _check_account(scope: Scope, billing_account_id: int) -> None:
    if not 0 < billing_account_id <= MAX_ID or billing_account_id not in scope.billing_account_ids:
        raise NotFound("billing account")
    if not scope.may(CustomerRole.PAYER, billing_account_id):
        raise NotFound("billing account")  # callers check the role first to say why


async def enroll(
    scope: Scope,
    *,
    billing_account_id: int,
    method_raw: str,
    agreed: bool,
    mandate_version: str,
    ip: str,
    actor: Actor,
) -> int:
    """Turn autopay on (or change its method) for an account the user may pay for;
    returns the enrollment id. The stored mandate is the text of the current version."""
    _check_account(scope, billing_account_id)
    errors: dict[str, str] = {}
    method_id = int(method_raw) if method_raw.isdigit() and len(method_raw) <= 9 else None
    if method_id is None:
        errors["method"] = "Choose a saved payment method."
    if not agreed:
        errors["agree"] = "Tick the box to accept the autopay mandate."
    if mandate_version != MANDATE_VERSION:
        errors["agree"] = "The mandate text has changed: read it again and accept it."
    if errors:
        raise ValidationFailed(errors)
    assert method_id is not None
    root = await account_root(billing_account_id)
    account = await _account(billing_account_id)
    assert account is not None
    assert root is not None
    text = account_mandate(account)
    now = datetime.now(UTC)
    async with transaction():
        await advisory_lock(_LOCK_PREFIX + billing_account_id)
        method = await for_update(
            SavedPaymentMethod.select(SavedPaymentMethod.id).where(
                (SavedPaymentMethod.id == method_id)
                & (SavedPaymentMethod.organization == root)
                & SavedPaymentMethod.removed_at.is_null()
            )
        )
        if not method:
            raise ValidationFailed({"method": "Choose one of your saved payment methods."})
        current = (
            await AutopayEnrollment.select(AutopayEnrollment.id, AutopayEnrollment.payment_method)
            .where(
                (AutopayEnrollment.billing_account == billing_account_id)
                & AutopayEnrollment.active.eq(True)
            )
            .first()
        )
        if current is not None:
            await AutopayEnrollment.update(
                {AutopayEnrollment.active: False, AutopayEnrollment.ended_at: now}
            ).where(AutopayEnrollment.id == current["id"])
        [row] = await AutopayEnrollment.insert(
            AutopayEnrollment(
                billing_account=billing_account_id,
                payment_method=method_id,
                mandate_text=text,
                mandate_version=MANDATE_VERSION,
                accepted_by_user=scope.user_id,
                accepted_at=now,
                accepted_ip=ip[:64],
                active=True,
            )
        )
        await record(
            AuditRecord(
                actor,
                "autopay.method_changed" if current else "autopay.enrolled",
                "billing_account",
                billing_account_id,
                data={
                    "enrollment": row["id"],
                    "method": method_id,
                    "previous_enrollment": current["id"] if current else None,
                    "mandate_version": MANDATE_VERSION,
                    "mandate_text": text,
                },
            )
        )
    return int(row["id"])


async def disenroll(scope: Scope, *, billing_account_id: int, actor: Actor) -> bool:
    """Turn autopay off; returns False when it was not on. Charges already started
    finish; no new ones start."""
    _check_account(scope, billing_account_id)
    now = datetime.now(UTC)
    async with transaction():
        await advisory_lock(_LOCK_PREFIX + billing_account_id)
        current = await for_update(
            AutopayEnrollment.select(AutopayEnrollment.id).where(
                (AutopayEnrollment.billing_account == billing_account_id)
                & AutopayEnrollment.active.eq(True)
            )
        )
        if not current:
            return False
        await AutopayEnrollment.update(
            {AutopayEnrollment.active: False, AutopayEnrollment.ended_at: now}
        ).where(AutopayEnrollment.id == current[0]["id"])
        await record(
            AuditRecord(
                actor,
                "autopay.disenrolled",
                "billing_account",
                billing_account_id,
                data={"enrollment": current[0]["id"]},
            )
        )
    return True
