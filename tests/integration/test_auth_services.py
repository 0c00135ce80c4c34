"""MFA and account-security services against the real PostgreSQL (``db``) and Redis:
TOTP drift and replay with the row lock (concurrent use of one code), recovery codes,
encryption at rest, flags raised once and refreshed, roles for resolving flags, and
the Redis failure counters (windows, lock, unlock)."""

# ruff: noqa: F811 - fixtures imported from tests.integration.conftest_auth
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pyotp
import pytest

from core import crypto
from core.audit.log import Actor
from core.audit.tables import AuditEvent
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity import mfa
from core.identity.roles import StaffRole
from core.identity.security import (
    Assessment,
    FailureCounts,
    NotPermitted,
    Policy,
    ResetLinkInvalid,
    assess,
    change_password,
    record_failures,
    request_password_reset,
    reset_password,
    resolve_flag,
)
from core.identity.services import authenticate, create_organization, create_staff_user, create_user
from core.identity.tables import MfaFactor, RecoveryCode, SecurityFlag, User
from portal.throttle import LoginThrottle
from tests.integration.conftest_auth import PASSWORD, random_ip, redis  # noqa: F401

ACTOR = Actor(type="customer", id="1", ip="198.51.100.1", user_agent="pytest")
T = 1_763_800_000.0


@pytest.fixture(autouse=True)
def encryption() -> Iterator[None]:
    previous = crypto._box
    crypto.configure([crypto.new_key()])
    yield
    crypto._box = previous


async def _customer() -> int:
    org = await create_organization(name="MFA Co")
    return await create_user(
        email=f"mfa-{uuid.uuid4().hex[:8]}@example.com",
        name="M",
        organization_id=org,
        password=PASSWORD,
    )


async def _enrolled(at: float = T) -> tuple[int, str, list[str]]:
    user_id = await _customer()
    enrollment = await mfa.pending_enrollment("customer", user_id)
    codes = await mfa.confirm_enrollment(
        "customer", user_id, pyotp.TOTP(enrollment.secret).at(at), ACTOR, at=at
    )
    return user_id, enrollment.secret, codes


async def test_enrollment_stores_the_secret_encrypted_and_codes_hashed(db) -> None:
    user_id = await _customer()
    first = await mfa.pending_enrollment("customer", user_id)
    assert (await mfa.pending_enrollment("customer", user_id)).secret == first.secret
    assert not await mfa.has_confirmed_factor("customer", user_id)

    with pytest.raises(ValidationFailed) as wrong:
        await mfa.confirm_enrollment(
            "customer", user_id, pyotp.TOTP(first.secret).at(T + 90), ACTOR, at=T
        )
    assert "code" in wrong.value.errors
    assert not await mfa.has_confirmed_factor("customer", user_id)  # nothing changed

    codes = await mfa.confirm_enrollment(
        "customer", user_id, pyotp.TOTP(first.secret).at(T), ACTOR, at=T
    )
    assert len(codes) == len(set(codes)) == 10
    [row] = await MfaFactor.select().where(MfaFactor.principal_id == user_id)
    assert first.secret not in row["secret_enc"]
    assert crypto.box().decrypt(row["secret_enc"]) == first.secret
    assert row["last_step"] == mfa.time_step(T)
    stored = {
        r["code_hash"]
        for r in await RecoveryCode.select().where(RecoveryCode.principal_id == user_id)
    }
    assert len(stored) == 10
    assert not stored & set(codes)
    assert not any(c.replace("-", "") in h for c in codes for h in stored)
    status = await mfa.status("customer", user_id)
    assert status.confirmed
    assert status.recovery_codes_left == 10
    with pytest.raises(Conflict):  # nothing pending any more
        await mfa.confirm_enrollment("customer", user_id, "123456", ACTOR, at=T)


@pytest.mark.parametrize(
    ("drift", "ok"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)]
)
async def test_drift_against_the_stored_factor(db, drift: int, ok: bool) -> None:
    # Enrolled four steps earlier, so the last used step is out of the way.
    user_id, secret, _ = await _enrolled(at=T - 4 * 30)
    code = pyotp.TOTP(secret).at(T + drift * 30)
    result = await mfa.verify_second_factor("customer", user_id, code, ACTOR, at=T)
    assert result.ok is ok
    [row] = await MfaFactor.select(MfaFactor.last_step).where(MfaFactor.principal_id == user_id)
    assert row["last_step"] == (mfa.time_step(T) + drift if ok else mfa.time_step(T - 120))


async def test_replay_is_refused_and_audited(db) -> None:
    user_id, secret, _ = await _enrolled(at=T - 60)
    code = pyotp.TOTP(secret).at(T)
    assert (await mfa.verify_second_factor("customer", user_id, code, ACTOR, at=T)).ok
    assert not (await mfa.verify_second_factor("customer", user_id, code, ACTOR, at=T)).ok
    assert not (await mfa.verify_second_factor("customer", user_id, code, ACTOR, at=T + 30)).ok
    # An older code still inside the window is refused too.
    older = pyotp.TOTP(secret).at(T - 30)
    assert not (await mfa.verify_second_factor("customer", user_id, older, ACTOR, at=T)).ok
    newer = pyotp.TOTP(secret).at(T + 30)
    assert (await mfa.verify_second_factor("customer", user_id, newer, ACTOR, at=T + 30)).ok
    actions = [
        e["action"]
        for e in await AuditEvent.select(AuditEvent.action)
        .where(AuditEvent.object_id == str(user_id))
        .order_by(AuditEvent.id)
    ]
    assert actions == [
        "mfa.enrolled",
        "login.succeeded",
        "login.mfa_failed",
        "login.mfa_failed",
        "login.mfa_failed",
        "login.succeeded",
    ]


async def test_one_code_used_concurrently_passes_once(db) -> None:
    user_id, secret, codes = await _enrolled(at=T - 60)
    code = pyotp.TOTP(secret).at(T)
    results = await asyncio.gather(
        *[mfa.verify_second_factor("customer", user_id, code, ACTOR, at=T) for _ in range(5)]
    )
    assert sum(r.ok for r in results) == 1
    recovery = await asyncio.gather(
        *[mfa.verify_second_factor("customer", user_id, codes[3], ACTOR, at=T) for _ in range(5)]
    )
    assert sum(r.ok for r in recovery) == 1
    assert (await mfa.status("customer", user_id)).recovery_codes_left == 9


async def test_recovery_codes_single_use_and_regenerated(db) -> None:
    user_id, _, codes = await _enrolled()
    first = await mfa.verify_second_factor(
        "customer", user_id, codes[0].upper(), ACTOR, purpose="reauth"
    )
    assert first.ok
    assert first.method == "recovery_code"
    assert first.recovery_codes_left == 9
    assert not (await mfa.verify_second_factor("customer", user_id, codes[0], ACTOR)).ok
    fresh = await mfa.regenerate_recovery_codes("customer", user_id, ACTOR)
    assert not (await mfa.verify_second_factor("customer", user_id, codes[1], ACTOR)).ok
    assert (await mfa.verify_second_factor("customer", user_id, fresh[0], ACTOR)).ok
    for junk in ("", "x" * 500, "🙂🙂🙂", "١٢٣٤٥٦", "aaaa-bbbb-cccc"):
        assert not (await mfa.verify_second_factor("customer", user_id, junk, ACTOR)).ok


async def test_replacing_a_factor_and_staff_cannot_disable(db) -> None:
    user_id, old_secret, old_codes = await _enrolled(at=T - 60)
    with pytest.raises(Conflict):  # one factor per user: no second pending row
        await mfa.pending_enrollment("customer", user_id)
    new = await mfa.replacement("customer", user_id)
    assert new.secret != old_secret
    assert (await mfa.replacement("customer", user_id, new.secret)).uri == new.uri
    # Until the new one is confirmed, the old one keeps working.
    code = pyotp.TOTP(old_secret).at(T)
    assert (await mfa.verify_second_factor("customer", user_id, code, ACTOR, at=T)).ok
    with pytest.raises(ValidationFailed):  # a code from the old device does not confirm
        await mfa.confirm_replacement(
            "customer", user_id, new.secret, pyotp.TOTP(old_secret).at(T + 30), ACTOR, at=T
        )
    codes = await mfa.confirm_replacement(
        "customer", user_id, new.secret, pyotp.TOTP(new.secret).at(T), ACTOR, at=T
    )
    later = pyotp.TOTP(old_secret).at(T + 30)
    assert not (await mfa.verify_second_factor("customer", user_id, later, ACTOR, at=T + 30)).ok
    newer = pyotp.TOTP(new.secret).at(T + 30)
    assert (await mfa.verify_second_factor("customer", user_id, newer, ACTOR, at=T + 30)).ok
    assert not (await mfa.verify_second_factor("customer", user_id, old_codes[0], ACTOR)).ok
    assert (await mfa.verify_second_factor("customer", user_id, codes[0], ACTOR)).ok
    assert await MfaFactor.count().where(MfaFactor.principal_id == user_id) == 1

    staff_id = await create_staff_user(
        email=f"s-{uuid.uuid4().hex[:6]}@ledgerline.example",
        name="S",
        role=StaffRole.SUPPORT_AGENT,
        password=PASSWORD,
    )
    with pytest.raises(Conflict):
        await mfa.disable("staff", staff_id, ACTOR)


async def test_authenticate_asks_for_the_second_factor(db) -> None:
    user_id, _, _ = await _enrolled()
    email = await authenticate_email(user_id)
    who = await authenticate(email, PASSWORD, ACTOR)
    assert who is not None
    assert who.second_factor == "totp"
    staff_email = f"s-{uuid.uuid4().hex[:6]}@ledgerline.example"
    await create_staff_user(email=staff_email, name="S", role=StaffRole.AUDITOR, password=PASSWORD)
    staff = await authenticate(staff_email, PASSWORD, ACTOR)
    assert staff is not None
    assert staff.second_factor == "enroll"


async def authenticate_email(user_id: int) -> str:
    row = await User.select(User.email).where(User.id == user_id).first()
    return row["email"]


async def test_flags_are_raised_once_then_refreshed_and_resolved_by_role(db) -> None:
    email = "target@example.com"
    for n in (10, 12):
        await record_failures(email, assess_for(account=n), ACTOR)
    [flag] = await SecurityFlag.select().where(SecurityFlag.subject == email)
    assert flag["kind"] == "login_failures_account"
    assert flag["count"] == 12
    assert await AuditEvent.count().where(AuditEvent.action == "security.flag_raised") == 1

    auditor = await create_staff_user(
        email="auditor@ledgerline.example", name="A", role=StaffRole.AUDITOR, password=PASSWORD
    )
    ops = await create_staff_user(
        email="ops2@ledgerline.example", name="O", role=StaffRole.BILLING_OPS, password=PASSWORD
    )
    with pytest.raises(NotPermitted):
        await resolve_flag(flag["id"], auditor, ACTOR)
    with pytest.raises(NotFound):
        await resolve_flag(flag["id"] + 1000, ops, ACTOR)
    await resolve_flag(flag["id"], ops, ACTOR)
    await resolve_flag(flag["id"], ops, ACTOR)  # a double submit changes nothing
    assert await AuditEvent.count().where(AuditEvent.action == "security.flag_resolved") == 1
    # A new failure after resolution opens a new flag.
    await record_failures(email, assess_for(account=10), ACTOR)
    assert len(await SecurityFlag.select(SecurityFlag.id).where(SecurityFlag.subject == email)) == 2


def assess_for(account: int) -> Assessment:
    return assess(FailureCounts(1, account, 0), "target@example.com", "")


async def test_password_services_validate_and_change_nothing_on_bad_input(db) -> None:
    user_id = await _customer()
    with pytest.raises(ValidationFailed) as bad:
        await change_password(
            "customer", user_id, "wrong current", "long enough pass", "long enough pass", ACTOR
        )
    assert set(bad.value.errors) == {"current_password"}
    with pytest.raises(ValidationFailed) as same:
        await change_password("customer", user_id, PASSWORD, PASSWORD, PASSWORD, ACTOR)
    assert "new_password" in same.value.errors
    assert await AuditEvent.exists().where(AuditEvent.action == "password.change_failed")

    email = await authenticate_email(user_id)
    first = await request_password_reset(email, ACTOR)
    second = await request_password_reset(email.upper(), ACTOR)
    assert first is not None
    assert second is not None
    assert await request_password_reset("nobody@example.com", ACTOR) is None
    with pytest.raises(ResetLinkInvalid):  # a newer link replaced it
        await reset_password(
            first.token, "another good passphrase", "another good passphrase", ACTOR
        )
    done = await reset_password(
        second.token, "another good passphrase", "another good passphrase", ACTOR
    )
    assert (done.kind, done.principal_id) == ("customer", user_id)
    assert await authenticate(email, "another good passphrase", ACTOR) is not None


async def test_redis_counters_windows_lock_and_unlock(redis) -> None:
    policy = Policy(lock_after=3, lock_seconds=2, window_seconds=2, ip_flag_at=4)
    throttle = LoginThrottle(redis, policy)
    email, ip = f"counter-{uuid.uuid4().hex[:8]}@example.com", random_ip()
    counts = [await throttle.failure(email, ip) for _ in range(3)]
    assert [c.consecutive for c in counts] == [1, 2, 3]
    assert [c.ip for c in counts] == [1, 2, 3]
    assert assess(counts[-1], email, ip, policy).lock
    assert await throttle.locked(email)
    assert await throttle.locked(email.upper())  # normalized
    refused = await throttle.failure(email, ip, toward_lock=False)
    assert (refused.consecutive, refused.account, refused.ip) == (0, 4, 4)
    mfa_fail = await throttle.failure(email, ip, mfa=True)
    assert mfa_fail.mfa == 1
    await throttle.unlock(email)
    assert not await throttle.locked(email)
    await asyncio.sleep(2.2)  # the sliding windows forget
    later = await throttle.failure(email, ip)
    assert (later.account, later.ip) == (1, 1)
    await throttle.success(email)
    assert (await throttle.failure(email, ip)).consecutive == 1
    assert not await throttle.ip_refused(ip)
