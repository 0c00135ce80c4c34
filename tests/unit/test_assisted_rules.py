"""Pure rules of assisted sessions: who may decide, state changes, expiry, effective
access (the intersection of the grant and the agent's staff role), form checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.identity import assisted as a
from core.identity.roles import StaffRole

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
STAFF_ROLES = [r.value for r in StaffRole]
STATUSES = list(a.TRANSITIONS)


# ---------------------------------------------------------------- effective access


@given(st.sampled_from(a.ACCESS_LEVELS), st.sampled_from([*STAFF_ROLES, "", "unknown"]))
def test_effective_access_is_the_intersection(granted: str, role: str) -> None:
    result = a.effective_access(granted, role)
    assert result in a.ACCESS_LEVELS
    assert (result == a.ACT) == (granted == a.ACT and a.staff_may_act(role))


@given(st.sampled_from(a.ACCESS_LEVELS))
def test_an_auditor_never_acts(granted: str) -> None:
    assert a.effective_access(granted, StaffRole.AUDITOR) == a.VIEW


def test_acting_roles() -> None:
    assert a.effective_access("act", "support_agent") == "act"
    assert a.effective_access("act", "finance_admin") == "act"
    assert a.effective_access("view", "finance_admin") == "view"
    assert not a.staff_may_act("auditor")
    assert not a.staff_may_act("")


# ---------------------------------------------------------------- states and expiry


def test_transitions() -> None:
    assert a.can_transition("requested", "granted")
    assert a.can_transition("requested", "denied")
    assert a.can_transition("requested", "ended")  # withdrawn
    assert a.can_transition("granted", "ended")
    assert a.can_transition("granted", "expired")
    assert not a.can_transition("granted", "granted")
    assert not a.can_transition("granted", "denied")
    assert not a.can_transition("denied", "granted")
    assert not a.can_transition("nonsense", "granted")


@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES))
def test_closed_states_are_final(current: str, new: str) -> None:
    if current in ("denied", "ended", "expired"):
        assert not a.can_transition(current, new)


@given(st.integers(min_value=-10_000, max_value=10_000))
def test_a_grant_is_expired_exactly_from_its_end(offset_seconds: int) -> None:
    expires = NOW + timedelta(seconds=offset_seconds)
    status = a.effective_status(
        "granted", requested_at=NOW - timedelta(hours=1), expires_at=expires, now=NOW
    )
    assert status == ("expired" if expires <= NOW else "granted")


def test_a_request_expires_undecided_after_a_day() -> None:
    fresh = NOW - a.REQUEST_TTL + timedelta(seconds=1)
    stale = NOW - a.REQUEST_TTL
    assert a.effective_status("requested", requested_at=fresh, expires_at=None, now=NOW) == (
        "requested"
    )
    assert a.effective_status("requested", requested_at=stale, expires_at=None, now=NOW) == (
        "expired"
    )
    for closed in ("denied", "ended", "expired"):
        assert a.effective_status(closed, requested_at=stale, expires_at=None, now=NOW) == closed


def test_a_grant_without_expiry_counts_as_expired() -> None:
    assert a.effective_status("granted", requested_at=NOW, expires_at=None, now=NOW) == "expired"


def test_expiry_time() -> None:
    end = NOW + timedelta(minutes=30)
    assert a.expiry_time("granted", requested_at=NOW, expires_at=end) == end
    assert a.expiry_time("requested", requested_at=NOW, expires_at=None) == NOW + a.REQUEST_TTL


def test_audit_window() -> None:
    start, end = NOW, NOW + timedelta(minutes=30)
    assert a.audit_window(decided_at=None, ended_at=None, expires_at=None, now=NOW) is None
    assert a.audit_window(decided_at=start, ended_at=None, expires_at=end, now=end) == (start, end)
    early = start + timedelta(minutes=5)
    assert a.audit_window(
        decided_at=start, ended_at=early, expires_at=end, now=end + timedelta(hours=1)
    ) == (start, early)
    mid = start + timedelta(minutes=10)  # still running: up to now
    assert a.audit_window(decided_at=start, ended_at=None, expires_at=end, now=mid) == (start, mid)


# ---------------------------------------------------------------- who decides


def decide(decider: int, user: int, user_paths: list[str], prefixes: list[str], **kw: int) -> bool:
    return a.may_decide(
        decider_id=decider,
        user_id=user,
        user_root=kw.get("user_root", 1),
        user_paths=user_paths,
        admin_root=kw.get("admin_root", 1),
        admin_prefixes=prefixes,
    )


def test_the_user_decides_for_themselves() -> None:
    assert a.may_decide(
        decider_id=5, user_id=5, user_root=1, user_paths=[], admin_root=None, admin_prefixes=()
    )


def test_a_non_admin_decides_for_no_one_else() -> None:
    assert not a.may_decide(
        decider_id=5,
        user_id=6,
        user_root=1,
        user_paths=["/1/2/"],
        admin_root=None,
        admin_prefixes=(),
    )


def test_an_admin_of_the_whole_group_decides_for_everyone_of_it() -> None:
    assert decide(5, 6, ["/1/2/"], ["/1/"])
    assert decide(5, 6, [], ["/1/"])  # even without a role yet


def test_a_subtree_admin_must_cover_every_membership() -> None:
    assert decide(5, 6, ["/1/3/", "/1/3/4/"], ["/1/3/"])
    assert not decide(5, 6, ["/1/3/", "/1/2/"], ["/1/3/"])  # also works elsewhere
    assert not decide(5, 6, ["/1/2/"], ["/1/3/"])  # the sibling subsidiary
    assert not decide(5, 6, [], ["/1/3/"])  # no role inside the area
    assert decide(5, 6, ["/1/3/", "/1/2/"], ["/1/3/", "/1/2/"])


def test_an_admin_of_another_group_decides_nothing() -> None:
    assert not decide(5, 6, ["/9/"], ["/1/"], user_root=9)
    assert not decide(5, 6, ["/1/"], ["/1/"], admin_root=9)


@given(
    st.lists(st.sampled_from(["/1/", "/1/2/", "/1/3/", "/1/3/4/", "/1/2/5/"]), max_size=4),
    st.lists(st.sampled_from(["/1/2/", "/1/3/", "/1/3/4/"]), min_size=1, max_size=3),
)
def test_a_subtree_admin_never_reaches_outside_the_area(
    user_paths: list[str], prefixes: list[str]
) -> None:
    if decide(5, 6, user_paths, prefixes):
        assert user_paths
        assert all(any(p.startswith(x) for x in prefixes) for p in user_paths)


# ---------------------------------------------------------------- forms


def test_parse_access_and_minutes() -> None:
    assert a.parse_access("view") == "view"
    assert a.parse_access(" act ") == "act"
    assert a.parse_access("admin") is None
    assert a.parse_access(None) is None
    assert a.parse_minutes("") == a.DEFAULT_MINUTES
    assert a.parse_minutes(None) == a.DEFAULT_MINUTES
    assert a.parse_minutes("45") == 45
    for bad in ("-5", "1e3", "4.5", "99999", "ten", "０"):
        assert a.parse_minutes(bad) is None, bad


@given(st.text(max_size=12))
def test_parse_minutes_never_raises(text: str) -> None:
    result = a.parse_minutes(text)
    assert result is None or 0 <= result <= 9999


def good_request(**changes: object) -> dict[str, str]:
    form: dict[str, object] = {
        "email": "x@example.com",
        "reason": "Customer cannot find invoice 42",
        "ticket_ref": "SUP-1234",
        "access": "view",
        "staff_role": "support_agent",
    }
    form.update(changes)
    return a.request_problems(**form)  # type: ignore[arg-type]


def test_request_problems() -> None:
    assert good_request() == {}
    assert good_request(access="act") == {}
    assert set(good_request(email="")) == {"email"}
    assert set(good_request(email="not-an-email")) == {"email"}
    assert set(good_request(email="a@b.c" + "x" * 260)) == {"email"}
    assert set(good_request(reason="")) == {"reason"}
    assert set(good_request(reason="x" * (a.REASON_MAX + 1))) == {"reason"}
    assert good_request(reason="x" * a.REASON_MAX) == {}
    assert set(good_request(reason="bell\x07")) == {"reason"}
    assert good_request(reason="line one\nline two") == {}
    assert set(good_request(ticket_ref="")) == {"ticket_ref"}
    assert set(good_request(ticket_ref="T" * (a.TICKET_MAX + 1))) == {"ticket_ref"}
    assert set(good_request(ticket_ref="SUP\n1")) == {"ticket_ref"}
    assert set(good_request(access=None)) == {"access"}


def test_auditors_may_only_ask_to_view() -> None:
    assert good_request(staff_role="auditor", access="view") == {}
    assert set(good_request(staff_role="auditor", access="act")) == {"access"}


@pytest.mark.parametrize(
    ("minutes", "access", "requested", "fields"),
    [
        (30, "view", "view", set()),
        (30, "act", "act", set()),
        (30, "view", "act", set()),  # granting less than asked is fine
        (30, "act", "view", {"access"}),  # never more
        (a.MIN_MINUTES, "view", "view", set()),
        (a.MAX_MINUTES, "view", "view", set()),
        (a.MIN_MINUTES - 1, "view", "view", {"minutes"}),
        (a.MAX_MINUTES + 1, "view", "view", {"minutes"}),
        (None, None, "view", {"minutes", "access"}),
    ],
)
def test_grant_problems(
    minutes: int | None, access: str | None, requested: str, fields: set[str]
) -> None:
    assert set(a.grant_problems(minutes=minutes, access=access, requested=requested)) == fields


def test_clean_text() -> None:
    assert a.clean_text("  a\r\nb\r ") == "a\nb"
    assert a.clean_text(None) == ""
    assert a.clean_text(["x"]) == ""
