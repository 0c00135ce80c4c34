"""TOTP rules with real pyotp codes at chosen timestamps: the ±1 step window, refusal
at ±2, replay refusal (RFC 6238 section 5.2), code formats; and the failure policy."""

from __future__ import annotations

import base64

import pyotp
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core.identity.mfa import (
    RECOVERY_CODE_COUNT,
    STEP_SECONDS,
    accepted_step,
    fresh_step,
    matching_step,
    new_recovery_code,
    normalize_recovery,
    normalize_totp,
    provisioning_uri,
    recovery_hash,
    time_step,
)
from core.identity.security import Assessment, FailureCounts, Policy, assess, ip_blocked

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
T0 = 1_763_800_000.0  # a fixed instant (Nov 2025)

secrets_ = st.binary(min_size=20, max_size=20).map(lambda b: base64.b32encode(b).decode())
instants = st.floats(min_value=1_000.0, max_value=4_000_000_000.0, allow_nan=False)


def code_at(secret: str, t: float) -> str:
    return pyotp.TOTP(secret).at(t)


@pytest.mark.parametrize("drift", [-1, 0, 1])
def test_drift_of_one_step_is_accepted(drift: int) -> None:
    code = code_at(SECRET, T0 + drift * STEP_SECONDS)
    assert matching_step(SECRET, code, T0) == time_step(T0) + drift
    assert accepted_step(SECRET, code, T0, last_step=0) == time_step(T0) + drift


@pytest.mark.parametrize("drift", [-3, -2, 2, 3])
def test_drift_of_two_steps_or_more_is_refused(drift: int) -> None:
    code = code_at(SECRET, T0 + drift * STEP_SECONDS)
    window = {code_at(SECRET, T0 + k * STEP_SECONDS) for k in (-1, 0, 1)}
    assert code not in window  # true for this secret and instant
    assert matching_step(SECRET, code, T0) is None
    assert accepted_step(SECRET, code, T0, last_step=0) is None


@given(secret=secrets_, t=instants, drift=st.sampled_from([-1, 0, 1]))
def test_any_secret_any_time_accepts_one_step_drift(secret: str, t: float, drift: int) -> None:
    code = code_at(secret, t + drift * STEP_SECONDS)
    step = matching_step(secret, code, t)
    assert step is not None
    assert time_step(t) - 1 <= step <= time_step(t) + 1
    assert pyotp.TOTP(secret).verify(code, for_time=t, valid_window=1)  # agrees with pyotp


@given(secret=secrets_, t=instants, drift=st.sampled_from([-5, -4, -3, -2, 2, 3, 4, 5]))
def test_any_secret_any_time_refuses_two_steps_or_more(secret: str, t: float, drift: int) -> None:
    code = code_at(secret, t + drift * STEP_SECONDS)
    # A 6-digit code can collide with one inside the window by chance (1 in 10^6 per step).
    assume(code not in {code_at(secret, t + k * STEP_SECONDS) for k in (-1, 0, 1)})
    assert matching_step(secret, code, t) is None


@given(secret=secrets_, t=instants, drift=st.sampled_from([-1, 0, 1]))
def test_a_used_code_is_refused_and_so_is_any_earlier_one(
    secret: str, t: float, drift: int
) -> None:
    code = code_at(secret, t + drift * STEP_SECONDS)
    step = accepted_step(secret, code, t, last_step=0)
    assert step is not None
    later_codes = {code_at(secret, t + k * STEP_SECONDS) for k in range(drift + 1, 3)}
    # A code equal by chance to a later step's code would rightly pass as that step.
    assume(code not in later_codes)
    # Replayed at once, or a step later while still inside the window: refused.
    assert accepted_step(secret, code, t, last_step=step) is None
    assert accepted_step(secret, code, t + STEP_SECONDS, last_step=step) is None
    for earlier in range(-1, drift):
        older = code_at(secret, t + earlier * STEP_SECONDS)
        assume(older not in later_codes)
        assert accepted_step(secret, older, t, last_step=step) is None
    if drift < 1:  # the next step's code is still fine
        later = code_at(secret, t + (drift + 1) * STEP_SECONDS)
        assert accepted_step(secret, later, t, last_step=step) == step + 1


def test_replay_of_the_same_step_after_it_moved_on() -> None:
    code = code_at(SECRET, T0)
    step = accepted_step(SECRET, code, T0, last_step=0)
    assert step == time_step(T0)
    assert accepted_step(SECRET, code, T0 + 5, last_step=step) is None
    assert accepted_step(SECRET, code, T0 + STEP_SECONDS, last_step=step) is None
    assert accepted_step(SECRET, code_at(SECRET, T0 + 30), T0 + 30, last_step=step) == step + 1


@pytest.mark.parametrize(
    ("step", "last", "ok"), [(None, 0, False), (10, 9, True), (10, 10, False), (10, 11, False)]
)
def test_fresh_step(step: int | None, last: int, ok: bool) -> None:
    assert fresh_step(step, last) is ok


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123456", "123456"),
        (" 123 456 ", "123456"),
        ("123-456", "123456"),
        ("12345", None),
        ("1234567", None),
        ("12345a", None),
        ("", None),
        ("١٢٣٤٥٦", None),  # non-ASCII digits are not TOTP digits
    ],
)
def test_normalize_totp(raw: str, expected: str | None) -> None:
    assert normalize_totp(raw) == expected


def test_malformed_codes_never_match() -> None:
    for junk in ("", "abcdef", "12 34", "0" * 64, "🙂" * 6):
        assert matching_step(SECRET, junk, T0) is None


def test_recovery_codes_are_distinct_normalizable_and_hashed_by_secret() -> None:
    codes = {new_recovery_code() for _ in range(RECOVERY_CODE_COUNT * 10)}
    assert len(codes) == RECOVERY_CODE_COUNT * 10
    code = next(iter(codes))
    assert len(code) == 14
    assert code.count("-") == 2
    assert normalize_recovery(code.upper().replace("-", " ")) == code.replace("-", "")
    assert recovery_hash(SECRET, code) == recovery_hash(SECRET, code.upper())
    assert recovery_hash(SECRET, code) != recovery_hash("A" * 32, code)
    assert normalize_recovery("123456") is None
    assert normalize_recovery("lllll-lllll-ll") is None  # 'l' is not in the alphabet


def test_provisioning_uri_names_the_issuer_and_account() -> None:
    uri = provisioning_uri(SECRET, "ops@ledgerline.example")
    assert uri.startswith("otpauth://totp/Ledgerline:ops%40ledgerline.example?")
    assert f"secret={SECRET}" in uri
    assert "issuer=Ledgerline" in uri


# ---------------------------------------------------------------- failure policy

POLICY = Policy()


def test_fifth_consecutive_failure_locks_and_raises_the_lockout_flag() -> None:
    for n in range(1, POLICY.lock_after):
        assert assess(FailureCounts(n, n, n), "a@x.example", "203.0.113.9") == Assessment()
    result = assess(FailureCounts(5, 5, 5), "a@x.example", "203.0.113.9")
    assert result.lock
    assert result.flags == (("lockout", "a@x.example", 5),)


def test_attempts_while_locked_never_relock() -> None:
    counts = FailureCounts(7, 7, 7, counted_toward_lock=False)
    assert not assess(counts, "a@x.example", "203.0.113.9").lock


@given(
    consecutive=st.integers(0, 50),
    account=st.integers(0, 50),
    ip=st.integers(0, 500),
    mfa=st.integers(0, 50),
)
def test_flags_follow_thresholds(consecutive: int, account: int, ip: int, mfa: int) -> None:
    result = assess(FailureCounts(consecutive, account, ip, mfa), "a@x.example", "198.51.100.7")
    kinds = {kind for kind, _, _ in result.flags}
    assert result.lock == (consecutive >= POLICY.lock_after)
    assert ("lockout" in kinds) == result.lock
    assert ("login_failures_account" in kinds) == (account >= POLICY.account_flag_at)
    assert ("login_failures_ip" in kinds) == (ip >= POLICY.ip_flag_at)
    assert ("mfa_failures" in kinds) == (mfa >= POLICY.mfa_flag_at)
    for kind, subject, _ in result.flags:
        assert subject == ("198.51.100.7" if kind == "login_failures_ip" else "a@x.example")


def test_address_refused_only_past_its_own_threshold() -> None:
    assert not ip_blocked(POLICY.ip_block_at - 1)
    assert ip_blocked(POLICY.ip_block_at)
    assert POLICY.ip_block_at > POLICY.ip_flag_at  # flagged long before refused
