"""Account security: failed-attempt policy, lockouts and security flags, password
change and reset.

The counting itself happens in Redis (``portal.throttle``); this module holds the pure
policy that turns counts into decisions (``assess``) and the services that record what
was decided (audit events, ``SecurityFlag`` rows), each in one transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncpg.exceptions import UniqueViolationError

from core import crypto
from core.audit.log import Actor, AuditRecord, record
from core.db import advisory_lock, for_update, transaction
from core.errors import DomainError, NotFound, ValidationFailed
from core.identity.admin import email_problem
from core.identity.passwords import hash_password, password_problem, verify_password
from core.identity.roles import StaffRole
from core.identity.services import normalize_email
from core.identity.sso import identity_lock_key
from core.identity.tables import (
    ExternalIdentity,
    PasswordResetToken,
    SecurityFlag,
    StaffUser,
    User,
)

FLAG_KINDS = ("login_failures_account", "login_failures_ip", "lockout", "mfa_failures")
FLAG_LABELS = {
    "login_failures_account": "Repeated failed sign-ins for one account",
    "login_failures_ip": "Repeated failed sign-ins from one address",
    "lockout": "Account locked after consecutive failures",
    "mfa_failures": "Repeated wrong two-step codes",
}
RESET_TTL = timedelta(hours=1)
EMAIL_CHANGE_TTL = timedelta(hours=1)


class NotPermitted(DomainError):
    """The actor's role does not allow this."""


# ---------------------------------------------------------------- pure policy


@dataclass(frozen=True, slots=True)
class Policy:
    lock_after: int = 5  # consecutive failures (password or second factor) lock the account
    lock_seconds: int = 15 * 60
    window_seconds: int = 15 * 60  # sliding window for the counts below
    account_flag_at: int = 10  # failures against one account in the window
    ip_flag_at: int = 10  # failures from one address in the window
    ip_block_at: int = 100  # failures from one address after which it is refused outright
    mfa_flag_at: int = 5  # wrong second-factor codes for one account in the window


POLICY = Policy()


@dataclass(frozen=True, slots=True)
class FailureCounts:
    consecutive: int  # since the last success or lock
    account: int  # in the window
    ip: int  # in the window
    mfa: int = 0  # in the window (second-factor failures only)
    counted_toward_lock: bool = True  # False for attempts refused because already locked


@dataclass(frozen=True, slots=True)
class Assessment:
    lock: bool = False
    flags: tuple[tuple[str, str, int], ...] = field(default_factory=tuple)  # kind, subject, n

    @property
    def anything(self) -> bool:
        return self.lock or bool(self.flags)


def assess(counts: FailureCounts, email: str, ip: str, policy: Policy = POLICY) -> Assessment:
    """What a failure leads to: a lock when the consecutive count reaches the limit, and a
    flag (raised, or refreshed with the new count) for each threshold at or above."""
    lock = counts.counted_toward_lock and counts.consecutive >= policy.lock_after
    flags: list[tuple[str, str, int]] = []
    if lock:
        flags.append(("lockout", email, counts.consecutive))
    if counts.account >= policy.account_flag_at:
        flags.append(("login_failures_account", email, counts.account))
    if ip and counts.ip >= policy.ip_flag_at:
        flags.append(("login_failures_ip", ip, counts.ip))
    if counts.mfa >= policy.mfa_flag_at:
        flags.append(("mfa_failures", email, counts.mfa))
    return Assessment(lock, tuple(flags))


def ip_blocked(ip_failures: int, policy: Policy = POLICY) -> bool:
    return ip_failures >= policy.ip_block_at


# ---------------------------------------------------------------- lockouts and flags


async def _raise_flag(kind: str, subject: str, count: int, actor: Actor) -> None:
    now = datetime.now(UTC)
    subject = subject[:254]
    open_flag = await for_update(
        SecurityFlag.select(SecurityFlag.id, SecurityFlag.count).where(
            (SecurityFlag.kind == kind)
            & (SecurityFlag.subject == subject)
            & SecurityFlag.resolved_at.is_null()
        )
    ).first()
    if open_flag is not None:
        await SecurityFlag.update(
            {SecurityFlag.count: max(count, int(open_flag["count"])), SecurityFlag.last_seen: now}
        ).where(SecurityFlag.id == open_flag["id"])
        return
    [row] = await SecurityFlag.insert(
        SecurityFlag(kind=kind, subject=subject, count=count, first_seen=now, last_seen=now)
    )
    await record(
        AuditRecord(
            actor=actor,
            action="security.flag_raised",
            object_type="security_flag",
            object_id=row["id"],
            data={"kind": kind, "subject": subject, "count": count},
        )
    )


async def record_failures(
    email: str, assessment: Assessment, actor: Actor, policy: Policy = POLICY
) -> None:
    """Audit a lockout (``login.locked``) and raise or refresh the flags it calls for."""
    if not assessment.anything:
        return
    email = normalize_email(email)
    async with transaction():
        if assessment.lock:
            until = datetime.now(UTC) + timedelta(seconds=policy.lock_seconds)
            await record(
                AuditRecord(
                    actor=actor,
                    action="login.locked",
                    object_type="account",
                    object_id=email[:64],  # the column's width; the full address is in data
                    data={"email": email, "until": until.isoformat(timespec="seconds")},
                )
            )
        for kind, subject, count in assessment.flags:
            await _raise_flag(kind, subject, count, actor)


async def refuse_attempt(email: str, reason: str, actor: Actor) -> None:
    """Audit a sign-in refused before any password check (locked account, throttled
    address)."""
    async with transaction():
        await record(
            AuditRecord(
                actor=actor,
                action="login.failed",
                object_type="user",
                data={"email": normalize_email(email)[:254], "reason": reason},
            )
        )


async def open_flags(limit: int = 50) -> list[dict[str, Any]]:
    rows = (
        await SecurityFlag.select()
        .where(SecurityFlag.resolved_at.is_null())
        .order_by(SecurityFlag.last_seen, ascending=False)
        .limit(limit)
    )
    for row in rows:
        row["label"] = FLAG_LABELS.get(row["kind"], row["kind"])
    return rows


async def staff_role(staff_id: int) -> str:
    row = await StaffUser.select(StaffUser.role).where(StaffUser.id == staff_id).first()
    return str(row["role"]) if row else ""


async def resolve_flag(flag_id: int, staff_id: int, actor: Actor) -> None:
    async with transaction():
        if await staff_role(staff_id) in ("", StaffRole.AUDITOR.value):
            raise NotPermitted("Auditors have read-only access.")
        flag = await for_update(
            SecurityFlag.select(
                SecurityFlag.id, SecurityFlag.kind, SecurityFlag.subject, SecurityFlag.resolved_at
            ).where(SecurityFlag.id == flag_id)
        ).first()
        if flag is None:
            raise NotFound("security flag")
        if flag["resolved_at"] is not None:
            return  # already resolved (a double submit): nothing to change
        await SecurityFlag.update(
            {SecurityFlag.resolved_at: datetime.now(UTC), SecurityFlag.resolved_by: staff_id}
        ).where(SecurityFlag.id == flag_id)
        await record(
            AuditRecord(
                actor=actor,
                action="security.flag_resolved",
                object_type="security_flag",
                object_id=flag_id,
                data={"kind": flag["kind"], "subject": flag["subject"]},
            )
        )


async def audit_event(
    actor: Actor, action: str, object_type: str, object_id: str | int, **data: Any
) -> None:
    """Audit an account action whose state lives outside the database (e.g. sessions)."""
    async with transaction():
        await record(
            AuditRecord(
                actor=actor,
                action=action,
                object_type=object_type,
                object_id=object_id,
                data=data,
            )
        )


# ---------------------------------------------------------------- principals


def _table(kind: str) -> type[User] | type[StaffUser]:
    if kind == "customer":
        return User
    if kind == "staff":
        return StaffUser
    raise ValueError(f"unknown principal kind {kind!r}")


def _object_type(kind: str) -> str:
    return "user" if kind == "customer" else "staff_user"


async def account_email(kind: str, principal_id: int) -> str:
    table = _table(kind)
    row = await table.select(table.email).where(table.id == principal_id).first()
    if row is None:
        raise NotFound("user")
    return str(row["email"])


async def check_password(kind: str, principal_id: int, password: str, actor: Actor) -> bool:
    """Re-authentication with the password of a signed-in user (audited either way)."""
    table = _table(kind)
    row = (
        await table.select(table.password_hash, table.is_active)
        .where(table.id == principal_id)
        .first()
    )
    ok = bool(row and row["is_active"]) and verify_password(
        row["password_hash"] if row else None, password
    )
    async with transaction():
        await record(
            AuditRecord(
                actor=actor,
                action="reauth.succeeded" if ok else "reauth.failed",
                object_type=_object_type(kind),
                object_id=principal_id,
                data={"factor": "password"},
            )
        )
    return ok


# ---------------------------------------------------------------- passwords


async def change_password(
    kind: str, principal_id: int, current: str, new: str, confirm: str, actor: Actor
) -> None:
    """Change a signed-in user's password; the current one must be given."""
    table = _table(kind)
    errors: dict[str, str] = {}
    if problem := password_problem(new):
        errors["new_password"] = problem
    elif new != confirm:
        errors["confirm_password"] = "The two new passwords do not match."
    async with transaction():
        row = await for_update(
            table.select(table.password_hash).where(table.id == principal_id)
        ).first()
        if row is None:
            raise NotFound("user")
        if not verify_password(row["password_hash"], current):
            await record(
                AuditRecord(
                    actor=actor,
                    action="password.change_failed",
                    object_type=_object_type(kind),
                    object_id=principal_id,
                )
            )
            errors = {"current_password": "That is not your current password.", **errors}
        elif not errors and verify_password(row["password_hash"], new):
            errors["new_password"] = "Choose a password different from your current one."
        if not errors:
            await table.update({table.password_hash: hash_password(new)}).where(
                table.id == principal_id
            )
            await record(
                AuditRecord(
                    actor=actor,
                    action="password.changed",
                    object_type=_object_type(kind),
                    object_id=principal_id,
                )
            )
    if errors:  # raised after the transaction so the failure audit above is kept
        raise ValidationFailed(errors)


@dataclass(frozen=True, slots=True)
class ResetRequest:
    email: str
    name: str
    token: str  # the only copy: mailed, never stored (the table keeps its SHA-256)


async def request_password_reset(email: str, actor: Actor) -> ResetRequest | None:
    """Create a single-use reset token valid for an hour, if an active account has this
    email; returns None otherwise (callers answer the same either way). Earlier unused
    tokens of the account stop working."""
    email = normalize_email(email)[:254]
    found: tuple[str, int, str] | None = None
    for kind in ("customer", "staff"):
        table = _table(kind)
        row = (
            await table.select(table.id, table.name, table.is_active)
            .where(table.email == email)
            .first()
        )
        if row is not None and row["is_active"]:
            found = (kind, int(row["id"]), str(row["name"]))
            break
    now = datetime.now(UTC)
    result = None
    async with transaction():
        if found is not None:
            kind, principal_id, name = found
            await PasswordResetToken.update({PasswordResetToken.used_at: now}).where(
                (PasswordResetToken.principal_kind == kind)
                & (PasswordResetToken.principal_id == principal_id)
                & PasswordResetToken.used_at.is_null()
            )
            token = crypto.new_token()
            await PasswordResetToken.insert(
                PasswordResetToken(
                    principal_kind=kind,
                    principal_id=principal_id,
                    token_hash=crypto.token_hash(token),
                    expires_at=now + RESET_TTL,
                    created_at=now,
                )
            )
            result = ResetRequest(email, name, token)
        await record(
            AuditRecord(
                actor=actor,
                action="password.reset_requested",
                object_type=_object_type(found[0]) if found else "",
                object_id=found[1] if found else "",
                data={"email": email, "account_found": found is not None},
            )
        )
    return result


def _token_is_shaped(token: str) -> bool:
    return 20 <= len(token) <= 100 and token.replace("-", "").replace("_", "").isalnum()


async def reset_token_valid(token: str) -> bool:
    if not _token_is_shaped(token):
        return False
    return await PasswordResetToken.exists().where(
        (PasswordResetToken.token_hash == crypto.token_hash(token))
        & PasswordResetToken.used_at.is_null()
        & (PasswordResetToken.expires_at > datetime.now(UTC))
    )


@dataclass(frozen=True, slots=True)
class PasswordReset:
    kind: str
    principal_id: int
    email: str


class ResetLinkInvalid(DomainError):
    """The link is unknown, expired or already used."""


async def reset_password(token: str, new: str, confirm: str, actor: Actor) -> PasswordReset:
    """Set a new password through a reset link; the token is used up. The caller signs
    out every session of the account."""
    if not _token_is_shaped(token):
        raise ResetLinkInvalid("This link is not valid.")
    if problem := password_problem(new):
        raise ValidationFailed({"new_password": problem})
    if new != confirm:
        raise ValidationFailed({"confirm_password": "The two passwords do not match."})
    now = datetime.now(UTC)
    async with transaction():
        row = await for_update(
            PasswordResetToken.select().where(
                PasswordResetToken.token_hash == crypto.token_hash(token)
            )
        ).first()
        if row is None or row["used_at"] is not None or row["expires_at"] <= now:
            raise ResetLinkInvalid("This link has expired or has already been used.")
        kind, principal_id = row["principal_kind"], int(row["principal_id"])
        table = _table(kind)
        account = await for_update(
            table.select(table.email, table.is_active).where(table.id == principal_id)
        ).first()
        if account is None or not account["is_active"]:
            raise ResetLinkInvalid("This link is not valid.")
        await table.update({table.password_hash: hash_password(new)}).where(
            table.id == principal_id
        )
        await PasswordResetToken.update({PasswordResetToken.used_at: now}).where(
            (PasswordResetToken.principal_kind == kind)
            & (PasswordResetToken.principal_id == principal_id)
            & PasswordResetToken.used_at.is_null()
        )
        await record(
            AuditRecord(
                actor=actor,
                action="password.reset",
                object_type=_object_type(kind),
                object_id=principal_id,
            )
        )
    return PasswordReset(kind, principal_id, str(account["email"]))


# ---------------------------------------------------------------- email address


async def sso_managed(kind: str, principal_id: int) -> bool:
    """A customer user linked to an identity at their company's provider: the provider,
    not Ledgerline, manages their email address."""
    return kind == "customer" and bool(
        await ExternalIdentity.exists().where(ExternalIdentity.user == principal_id)
    )


async def _email_in_use(email: str) -> bool:
    """By any customer or staff user (sign-in looks an address up in both tables)."""
    return bool(
        await User.exists().where(User.email == email)
        or await StaffUser.exists().where(StaffUser.email == email)
    )


def _credential_stamp(password_hash: str) -> str:
    """A fingerprint of the password a pending change was asked with: changing or
    resetting the password makes the pending change's link stop working."""
    return crypto.token_hash("email-change:" + (password_hash or ""))[:32]


class SsoManaged(DomainError):
    """The user's company identity provider manages their email address."""


class EmailChangeInvalid(DomainError):
    """The pending change no longer applies (the account changed since it was asked)."""


class EmailAddressTaken(DomainError):
    """Another account took the address between the request and the confirmation."""


@dataclass(frozen=True, slots=True)
class EmailChangeRequest:
    """A checked request, not yet done: the caller keeps it (with a single-use token
    mailed to ``new_email``) and passes it back to ``change_email`` once confirmed."""

    kind: str
    principal_id: int
    name: str
    old_email: str
    new_email: str
    stamp: str


async def request_email_change(
    kind: str, principal_id: int, current_password: str, new_email: str, actor: Actor
) -> EmailChangeRequest:
    """Check a signed-in user's request to change their email address: their current
    password, then a valid address that no customer or staff user has. Nothing changes
    yet. Field errors are keyed ``new_email`` and ``current_password``."""
    table = _table(kind)
    new = normalize_email(new_email)[:320]
    errors: dict[str, str] = {}
    if not new:
        errors["new_email"] = "Enter your new email address."
    elif problem := email_problem(new):
        errors["new_email"] = problem
    result = None
    async with transaction():
        row = await for_update(
            table.select(table.email, table.name, table.password_hash, table.is_active).where(
                table.id == principal_id
            )
        ).first()
        if row is None or not row["is_active"]:
            raise NotFound("user")
        if await sso_managed(kind, principal_id):
            raise SsoManaged("Your company's identity provider manages your email address.")
        if not verify_password(row["password_hash"], current_password):
            await record(
                AuditRecord(
                    actor=actor,
                    action="account.email_change_failed",
                    object_type=_object_type(kind),
                    object_id=principal_id,
                    data={"reason": "wrong_password"},
                )
            )
            errors = {"current_password": "That is not your current password.", **errors}
        elif not errors:
            if new == row["email"]:
                errors["new_email"] = "This is already your email address."
            elif await _email_in_use(new):
                errors["new_email"] = "This email address is already in use. Use another one."
        if not errors:
            result = EmailChangeRequest(
                kind=kind,
                principal_id=principal_id,
                name=str(row["name"]),
                old_email=str(row["email"]),
                new_email=new,
                stamp=_credential_stamp(row["password_hash"]),
            )
            await record(
                AuditRecord(
                    actor=actor,
                    action="account.email_change_requested",
                    object_type=_object_type(kind),
                    object_id=principal_id,
                    data={"old_email": result.old_email, "new_email": new},
                )
            )
    if errors or result is None:  # raised after the transaction: the failure audit is kept
        raise ValidationFailed(errors)
    return result


@dataclass(frozen=True, slots=True)
class EmailChanged:
    kind: str
    principal_id: int
    old_email: str
    new_email: str


async def change_email(pending: EmailChangeRequest, actor: Actor) -> EmailChanged:
    """Carry out a confirmed change, in one transaction. The address is checked again
    under a lock on it (the one SSO provisioning takes, so the two cannot both claim it)
    and under the table's unique index; the caller signs out the other sessions.

    Raises ``EmailAddressTaken`` when another account has the address by now, and
    ``EmailChangeInvalid`` when the account changed since the request (another email,
    another password, deactivated, linked to SSO)."""
    kind, principal_id, new = pending.kind, pending.principal_id, pending.new_email
    table = _table(kind)
    try:
        async with transaction():
            await advisory_lock(identity_lock_key("email", new))
            row = await for_update(
                table.select(table.email, table.password_hash, table.is_active).where(
                    table.id == principal_id
                )
            ).first()
            if (
                row is None
                or not row["is_active"]
                or row["email"] != pending.old_email
                or not crypto.same(_credential_stamp(row["password_hash"]), pending.stamp)
                or await sso_managed(kind, principal_id)
            ):
                raise EmailChangeInvalid("This link no longer works.")
            if await _email_in_use(new):
                raise EmailAddressTaken(new)
            await table.update({table.email: new}).where(table.id == principal_id)
            await record(
                AuditRecord(
                    actor=actor,
                    action="account.email_changed",
                    object_type=_object_type(kind),
                    object_id=principal_id,
                    data={"old_email": pending.old_email, "new_email": new},
                )
            )
    except EmailAddressTaken:
        await _email_change_refused(pending, "address_taken", actor)
        raise
    except (UniqueViolationError, sqlite3.IntegrityError) as exc:
        # A race the lock cannot see (a user created meanwhile without taking it).
        await _email_change_refused(pending, "address_taken", actor)
        raise EmailAddressTaken(new) from exc
    except EmailChangeInvalid:
        await _email_change_refused(pending, "account_changed", actor)
        raise
    return EmailChanged(kind, principal_id, pending.old_email, new)


async def _email_change_refused(pending: EmailChangeRequest, reason: str, actor: Actor) -> None:
    async with transaction():
        await record(
            AuditRecord(
                actor=actor,
                action="account.email_change_failed",
                object_type=_object_type(pending.kind),
                object_id=pending.principal_id,
                data={"reason": reason, "new_email": pending.new_email},
            )
        )
