"""TOTP second factor (RFC 6238) and single-use recovery codes.

Pure rules first (time steps, the ±1 step window, replay refusal, code formats), then
the services that load, lock and save factors, each in one transaction.

* The TOTP secret is encrypted at rest (``core.crypto.box()``).
* A code is accepted if it matches the current time step or one step either side
  (``valid_window=1``), and only if its step is later than the factor's ``last_step``
  (RFC 6238 section 5.2: a code, once used, is refused; so is any older one). The
  factor row is locked while ``last_step`` is read and advanced, so two concurrent
  requests with the same code cannot both pass.
* Recovery codes are 12 random base32 characters (60 bits) shown once. They are stored
  as HMAC-SHA256 keyed with the factor's TOTP secret rather than argon2: a slow hash
  protects low-entropy human passwords, while a 60-bit random code is out of reach of
  guessing either way, and the key lives encrypted at rest, so a copy of the database
  alone cannot even test a guess. Verifying is then one indexed lookup instead of up to
  ten argon2 verifications (about 1.3 s of CPU on this machine) per attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyotp

from core import crypto
from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import MfaFactor, RecoveryCode, StaffUser, User

ISSUER = "Ledgerline"
STEP_SECONDS = 30
DIGITS = 6
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no l, o, 0, 1
_RECOVERY_LENGTH = 12
_SEPARATORS = re.compile(r"[\s\-]+")

# ---------------------------------------------------------------- pure rules


def time_step(at: float) -> int:
    """The RFC 6238 time step (counter) of a Unix time."""
    return int(at // STEP_SECONDS)


def code_for_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def normalize_totp(code: str) -> str | None:
    """Six digits (spaces allowed, as authenticator apps show "123 456"), or None."""
    cleaned = _SEPARATORS.sub("", code or "")
    ok = len(cleaned) == DIGITS and cleaned.isascii() and cleaned.isdigit()
    return cleaned if ok else None


def matching_step(secret: str, code: str, at: float, window: int = VALID_WINDOW) -> int | None:
    """The time step within ``window`` steps of ``at`` whose code is ``code``, or None.

    Every candidate is compared in constant time; if two steps share the code, the
    latest wins (so replay protection records the furthest step).
    """
    code = normalize_totp(code) or ""
    if not code:
        return None
    current = time_step(at)
    found = None
    for step in range(current - window, current + window + 1):
        if step >= 0 and hmac.compare_digest(code_for_step(secret, step), code):
            found = step
    return found


def fresh_step(step: int | None, last_step: int) -> bool:
    """RFC 6238 section 5.2: only a step later than the last accepted one is accepted."""
    return step is not None and step > last_step


def accepted_step(
    secret: str, code: str, at: float, last_step: int, window: int = VALID_WINDOW
) -> int | None:
    """The step to record if ``code`` is valid at ``at`` and not a replay, else None."""
    step = matching_step(secret, code, at, window)
    return step if fresh_step(step, last_step) else None


def new_secret() -> str:
    return pyotp.random_base32()  # 32 base32 characters: 160 bits


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4))


def normalize_recovery(code: str) -> str | None:
    cleaned = _SEPARATORS.sub("", code or "").lower()
    if len(cleaned) != _RECOVERY_LENGTH or not set(cleaned) <= set(_RECOVERY_ALPHABET):
        return None
    return cleaned


def recovery_hash(secret: str, code: str) -> str:
    normalized = normalize_recovery(code) or ""
    digest = hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).hexdigest()
    return "hmac-sha256:" + digest


# ---------------------------------------------------------------- services


@dataclass(frozen=True, slots=True)
class MfaStatus:
    confirmed: bool
    confirmed_at: datetime | None
    recovery_codes_left: int


@dataclass(frozen=True, slots=True)
class Enrollment:
    secret: str
    uri: str


@dataclass(frozen=True, slots=True)
class FactorCheck:
    ok: bool
    method: str = ""  # "totp" or "recovery_code"
    recovery_codes_left: int = 0


def _principal(kind: str) -> str:
    if kind not in {"customer", "staff"}:
        raise ValueError(f"unknown principal kind {kind!r}")
    return kind


def object_type(kind: str) -> str:
    """How audit events name a principal: customer users are "user", staff "staff_user"."""
    return "user" if _principal(kind) == "customer" else "staff_user"


def _of(kind: str, principal_id: int) -> object:
    return (MfaFactor.principal_kind == _principal(kind)) & (MfaFactor.principal_id == principal_id)


def _codes_of(kind: str, principal_id: int) -> object:
    return (RecoveryCode.principal_kind == _principal(kind)) & (
        RecoveryCode.principal_id == principal_id
    )


async def has_confirmed_factor(kind: str, principal_id: int) -> bool:
    return await MfaFactor.exists().where(
        _of(kind, principal_id) & MfaFactor.confirmed_at.is_not_null()
    )


async def status(kind: str, principal_id: int) -> MfaStatus:
    factor = (
        await MfaFactor.select(MfaFactor.confirmed_at)
        .where(_of(kind, principal_id) & MfaFactor.confirmed_at.is_not_null())
        .first()
    )
    left = await RecoveryCode.count().where(
        _codes_of(kind, principal_id) & RecoveryCode.used_at.is_null()
    )
    return MfaStatus(factor is not None, factor["confirmed_at"] if factor else None, left)


async def _account_label(kind: str, principal_id: int) -> str:
    table = User if kind == "customer" else StaffUser
    row = await table.select(table.email).where(table.id == principal_id).first()
    if row is None:
        raise NotFound("user")
    return str(row["email"])


async def pending_enrollment(kind: str, principal_id: int) -> Enrollment:
    """The unconfirmed factor being set up (created on first use, then reused, so
    reloading the page keeps the same QR code). A user has at most one factor row: to
    move a confirmed factor to a new device, see ``replacement``."""
    async with transaction():
        label = await _account_label(kind, principal_id)
        row = await for_update(
            MfaFactor.select(MfaFactor.id, MfaFactor.secret_enc, MfaFactor.confirmed_at).where(
                _of(kind, principal_id)
            )
        ).first()
        if row is not None and row["confirmed_at"] is not None:
            raise Conflict("Two-step verification is already set up.")
        if row is not None:
            secret = crypto.box().decrypt(row["secret_enc"])
        else:
            secret = new_secret()
            await MfaFactor.insert(
                MfaFactor(
                    principal_kind=kind,
                    principal_id=principal_id,
                    secret_enc=crypto.box().encrypt(secret),
                    created_at=datetime.now(UTC),
                )
            )
    return Enrollment(secret, provisioning_uri(secret, label))


async def replacement(kind: str, principal_id: int, secret: str | None = None) -> Enrollment:
    """A new secret (or ``secret`` again) to move a confirmed factor to a new device.
    Nothing is stored: the caller keeps the secret, encrypted, until
    ``confirm_replacement``; the current device keeps working until then."""
    secret = secret or new_secret()
    return Enrollment(secret, provisioning_uri(secret, await _account_label(kind, principal_id)))


async def _replace_recovery_codes(kind: str, principal_id: int, secret: str) -> list[str]:
    await RecoveryCode.delete().where(_codes_of(kind, principal_id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    now = datetime.now(UTC)
    await RecoveryCode.insert(
        *[
            RecoveryCode(
                principal_kind=kind,
                principal_id=principal_id,
                code_hash=recovery_hash(secret, code),
                created_at=now,
            )
            for code in codes
        ]
    )
    return codes


def _first_step(secret: str, code: str, at: float) -> int:
    if normalize_totp(code) is None:
        raise ValidationFailed({"code": "Enter the 6-digit code from your app."})
    step = accepted_step(secret, code, at, last_step=0)
    if step is None:
        raise ValidationFailed(
            {"code": "That code is not valid. Check your device's clock and try again."}
        )
    return step


async def _confirmed(
    kind: str, principal_id: int, factor_id: int, secret: str, step: int, actor: Actor, **data: Any
) -> list[str]:
    await MfaFactor.update(
        {
            MfaFactor.secret_enc: crypto.box().encrypt(secret),
            MfaFactor.confirmed_at: datetime.now(UTC),
            MfaFactor.last_step: step,
        }
    ).where(MfaFactor.id == factor_id)
    codes = await _replace_recovery_codes(kind, principal_id, secret)
    await record(
        AuditRecord(
            actor=actor,
            action="mfa.enrolled",
            object_type=object_type(kind),
            object_id=principal_id,
            data={"factor": "totp", **data},
        )
    )
    return codes


async def confirm_enrollment(
    kind: str,
    principal_id: int,
    code: str,
    actor: Actor,
    at: float | None = None,
    *,
    completes_sign_in: bool = False,
) -> list[str]:
    """Confirm the pending factor with a code from the app. Returns the new recovery
    codes (shown once, stored only as keyed hashes). ``completes_sign_in``: staff who
    had to enroll while signing in; their sign-in is audited as succeeded too."""
    at = time.time() if at is None else at
    async with transaction():
        pending = await for_update(
            MfaFactor.select(MfaFactor.id, MfaFactor.secret_enc).where(
                _of(kind, principal_id) & MfaFactor.confirmed_at.is_null()
            )
        ).first()
        if pending is None:
            raise Conflict("There is no authenticator set-up in progress. Start again.")
        secret = crypto.box().decrypt(pending["secret_enc"])
        step = _first_step(secret, code, at)
        codes = await _confirmed(
            kind, principal_id, pending["id"], secret, step, actor, replaced=False
        )
        if completes_sign_in:
            await record(
                AuditRecord(
                    actor=actor,
                    action="login.succeeded",
                    object_type=object_type(kind),
                    object_id=principal_id,
                    data={"factor": "totp_enrollment"},
                )
            )
        return codes


async def confirm_replacement(
    kind: str, principal_id: int, secret: str, code: str, actor: Actor, at: float | None = None
) -> list[str]:
    """Swap the confirmed factor's secret for ``secret`` once a code from the new device
    checks out; the recovery codes are replaced too (returned, shown once)."""
    at = time.time() if at is None else at
    async with transaction():
        factor = await for_update(
            MfaFactor.select(MfaFactor.id).where(
                _of(kind, principal_id) & MfaFactor.confirmed_at.is_not_null()
            )
        ).first()
        if factor is None:
            raise Conflict("Set up an authenticator app first.")
        step = _first_step(secret, code, at)
        return await _confirmed(
            kind, principal_id, factor["id"], secret, step, actor, replaced=True
        )


async def regenerate_recovery_codes(kind: str, principal_id: int, actor: Actor) -> list[str]:
    async with transaction():
        factor = await for_update(
            MfaFactor.select(MfaFactor.id, MfaFactor.secret_enc).where(
                _of(kind, principal_id) & MfaFactor.confirmed_at.is_not_null()
            )
        ).first()
        if factor is None:
            raise Conflict("Set up an authenticator app first.")
        codes = await _replace_recovery_codes(
            kind, principal_id, crypto.box().decrypt(factor["secret_enc"])
        )
        await record(
            AuditRecord(
                actor=actor,
                action="mfa.recovery_codes_regenerated",
                object_type=object_type(kind),
                object_id=principal_id,
            )
        )
    return codes


async def disable(kind: str, principal_id: int, actor: Actor) -> None:
    """Remove the user's factor and recovery codes (staff must keep MFA)."""
    if kind == "staff":
        raise Conflict("Staff accounts must keep two-step verification.")
    async with transaction():
        removed = await MfaFactor.count().where(_of(kind, principal_id))
        await MfaFactor.delete().where(_of(kind, principal_id))
        await RecoveryCode.delete().where(_codes_of(kind, principal_id))
        if removed:
            await record(
                AuditRecord(
                    actor=actor,
                    action="mfa.disabled",
                    object_type=object_type(kind),
                    object_id=principal_id,
                )
            )


async def verify_second_factor(
    kind: str,
    principal_id: int,
    code: str,
    actor: Actor,
    *,
    purpose: str = "login",
    at: float | None = None,
) -> FactorCheck:
    """Check a TOTP code (6 digits) or a recovery code for a confirmed factor.

    ``purpose`` is "login" (completes a sign-in: audited ``login.succeeded`` /
    ``login.mfa_failed``) or "reauth" (``reauth.succeeded`` / ``reauth.failed``). A TOTP
    code advances ``last_step`` under a row lock; a recovery code is marked used.
    """
    at = time.time() if at is None else at
    result = FactorCheck(False)
    async with transaction():
        factor = await for_update(
            MfaFactor.select(MfaFactor.id, MfaFactor.secret_enc, MfaFactor.last_step).where(
                _of(kind, principal_id) & MfaFactor.confirmed_at.is_not_null()
            )
        ).first()
        if factor is not None:
            secret = crypto.box().decrypt(factor["secret_enc"])
            if normalize_totp(code) is not None:
                step = accepted_step(secret, code, at, int(factor["last_step"]))
                if step is not None:
                    await MfaFactor.update({MfaFactor.last_step: step}).where(
                        MfaFactor.id == factor["id"]
                    )
                    result = FactorCheck(True, "totp")
            elif normalize_recovery(code) is not None:
                row = await for_update(
                    RecoveryCode.select(RecoveryCode.id).where(
                        _codes_of(kind, principal_id)
                        & (RecoveryCode.code_hash == recovery_hash(secret, code))
                        & RecoveryCode.used_at.is_null()
                    )
                ).first()
                if row is not None:
                    await RecoveryCode.update({RecoveryCode.used_at: datetime.now(UTC)}).where(
                        RecoveryCode.id == row["id"]
                    )
                    left = await RecoveryCode.count().where(
                        _codes_of(kind, principal_id) & RecoveryCode.used_at.is_null()
                    )
                    result = FactorCheck(True, "recovery_code", left)
        if purpose == "login":
            action = "login.succeeded" if result.ok else "login.mfa_failed"
        else:
            action = "reauth.succeeded" if result.ok else "reauth.failed"
        if result.ok and purpose == "login" and kind == "customer":
            await User.update({User.last_login_at: datetime.now(UTC)}).where(
                User.id == principal_id
            )
        await record(
            AuditRecord(
                actor=actor,
                action=action,
                object_type=object_type(kind),
                object_id=principal_id,
                data={"factor": result.method or "mfa"},
            )
        )
    return result
