"""Identity services: issuing entities, the organization tree, billing accounts, users,
memberships, staff, and password authentication."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import available_timezones

from core.audit.log import Actor, AuditRecord, record
from core.db import transaction
from core.errors import NotFound, ValidationFailed
from core.identity.mfa import has_confirmed_factor
from core.identity.passwords import hash_password, password_problem, verify_password
from core.identity.roles import CustomerRole, StaffRole
from core.identity.tables import (
    BillingAccount,
    CustomerOrganization,
    IssuingEntity,
    Membership,
    StaffUser,
    User,
)
from core.money import currency

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _check_email(email: str) -> str:
    email = normalize_email(email)
    if not _EMAIL.match(email) or len(email) > 254:
        raise ValidationFailed({"email": "Enter a valid email address."})
    return email


async def create_issuing_entity(
    *,
    code: str,
    name: str,
    legal_name: str,
    country: str,
    functional_currency: str,
    tax_registration: str = "",
    address: str = "",
) -> int:
    currency(functional_currency)
    async with transaction():
        [row] = await IssuingEntity.insert(
            IssuingEntity(
                code=code,
                name=name,
                legal_name=legal_name,
                country=country.upper(),
                functional_currency=functional_currency.upper(),
                tax_registration=tax_registration,
                address=address,
            )
        )
    return int(row["id"])


async def create_organization(
    *,
    name: str,
    parent_id: int | None = None,
    tax_id: str = "",
    country: str = "",
    address: str = "",
) -> int:
    """Add a node to a customer group tree (a root when ``parent_id`` is None)."""
    async with transaction():
        parent = None
        if parent_id is not None:
            parent = (
                await CustomerOrganization.select(
                    CustomerOrganization.path,
                    CustomerOrganization.depth,
                    CustomerOrganization.root_id,
                )
                .where(CustomerOrganization.id == parent_id)
                .first()
            )
            if parent is None:
                raise NotFound("parent organization")
        [row] = await CustomerOrganization.insert(
            CustomerOrganization(
                name=name,
                parent=parent_id,
                tax_id=tax_id,
                country=country.upper(),
                address=address,
                depth=0 if parent is None else parent["depth"] + 1,
            )
        )
        node_id = int(row["id"])
        path = (parent["path"] if parent else "/") + f"{node_id}/"
        root_id = parent["root_id"] if parent else node_id
        await CustomerOrganization.update(
            {CustomerOrganization.path: path, CustomerOrganization.root_id: root_id}
        ).where(CustomerOrganization.id == node_id)
    return node_id


async def create_billing_account(
    *,
    code: str,
    name: str,
    organization_id: int,
    issuing_entity_id: int,
    currency_code: str,
    timezone: str = "UTC",
    payment_terms_days: int = 30,
    bill_to_email: str = "",
) -> int:
    errors: dict[str, str] = {}
    try:
        currency(currency_code)
    except ValueError as exc:
        errors["currency"] = str(exc)
    if timezone not in available_timezones():
        errors["timezone"] = f"Unknown timezone {timezone!r}."
    if not 0 <= payment_terms_days <= 365:
        errors["payment_terms_days"] = "Payment terms must be between 0 and 365 days."
    if errors:
        raise ValidationFailed(errors)
    async with transaction():
        [row] = await BillingAccount.insert(
            BillingAccount(
                code=code,
                name=name,
                organization=organization_id,
                issuing_entity=issuing_entity_id,
                currency=currency_code.upper(),
                timezone=timezone,
                payment_terms_days=payment_terms_days,
                bill_to_email=bill_to_email,
            )
        )
    return int(row["id"])


async def create_user(
    *, email: str, name: str, organization_id: int, password: str | None = None
) -> int:
    email = _check_email(email)
    if password is not None and (problem := password_problem(password)):
        raise ValidationFailed({"password": problem})
    async with transaction():
        if await User.exists().where(User.email == email):
            raise ValidationFailed({"email": "A user with this email already exists."})
        [row] = await User.insert(
            User(
                email=email,
                name=name,
                organization=organization_id,
                password_hash=hash_password(password) if password else "",
                created_at=datetime.now(UTC),
            )
        )
    return int(row["id"])


async def grant_role(user_id: int, organization_id: int, role: CustomerRole, actor: Actor) -> None:
    async with transaction():
        existing = (
            await Membership.select(Membership.id)
            .where((Membership.user == user_id) & (Membership.organization == organization_id))
            .first()
        )
        if existing:
            await Membership.update({Membership.role: role.value}).where(
                Membership.id == existing["id"]
            )
        else:
            await Membership.insert(
                Membership(
                    user=user_id,
                    organization=organization_id,
                    role=role.value,
                    created_at=datetime.now(UTC),
                )
            )
        await record(
            AuditRecord(
                actor=actor,
                action="membership.granted",
                object_type="user",
                object_id=user_id,
                data={"organization_id": organization_id, "role": role.value},
            )
        )


async def create_staff_user(*, email: str, name: str, role: StaffRole, password: str) -> int:
    email = _check_email(email)
    if problem := password_problem(password):
        raise ValidationFailed({"password": problem})
    async with transaction():
        [row] = await StaffUser.insert(
            StaffUser(
                email=email,
                name=name,
                role=role.value,
                password_hash=hash_password(password),
                created_at=datetime.now(UTC),
            )
        )
    return int(row["id"])


@dataclass(frozen=True, slots=True)
class SignedIn:
    kind: str  # "customer" or "staff"
    id: int
    name: str
    email: str
    role: str = ""
    # "" (signed in), "totp" (a second-factor code is due) or "enroll" (staff without MFA)
    second_factor: str = ""


async def authenticate(email: str, password: str, actor: Actor) -> SignedIn | None:
    """Check a local password for a customer user, then for a staff user.

    Both outcomes are audited; an unknown email costs the same as a wrong password. A
    password alone completes the sign-in only without MFA: with a confirmed factor the
    result asks for a code, and staff without one must enroll (``second_factor``).
    """
    email = normalize_email(email)
    user = (
        await User.select(User.id, User.name, User.email, User.password_hash, User.is_active)
        .where(User.email == email)
        .first()
    )
    staff = None
    if user is None:
        staff = (
            await StaffUser.select(
                StaffUser.id,
                StaffUser.name,
                StaffUser.email,
                StaffUser.password_hash,
                StaffUser.is_active,
                StaffUser.role,
            )
            .where(StaffUser.email == email)
            .first()
        )
    found = user or staff
    ok = verify_password(found["password_hash"] if found else None, password)
    ok = ok and found is not None and bool(found["is_active"])
    signed_in = None
    if ok and found is not None:
        kind = "customer" if user else "staff"
        second = "totp" if await has_confirmed_factor(kind, found["id"]) else ""
        second = "enroll" if kind == "staff" and not second else second
        signed_in = SignedIn(
            kind, found["id"], found["name"], found["email"], found.get("role", ""), second
        )
    action, data = "login.failed", {"email": email}
    if signed_in:
        action, data = "login.succeeded", {}
        if signed_in.second_factor:
            action, data = "login.password_accepted", {"second_factor": signed_in.second_factor}
    async with transaction():
        if signed_in and signed_in.kind == "customer" and not signed_in.second_factor:
            await User.update({User.last_login_at: datetime.now(UTC)}).where(
                User.id == signed_in.id
            )
        await record(
            AuditRecord(
                actor=Actor(
                    type=signed_in.kind if signed_in else "anonymous",
                    id=str(signed_in.id) if signed_in else "",
                    ip=actor.ip,
                    user_agent=actor.user_agent,
                ),
                action=action,
                object_type="staff_user" if signed_in and signed_in.kind == "staff" else "user",
                object_id=signed_in.id if signed_in else "",
                data=data,
            )
        )
    return signed_in
