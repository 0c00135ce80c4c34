"""Pure rules of customer administration and of the entity switcher's narrowing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import NotFound
from core.identity.admin import (
    admin_prefixes,
    covers,
    email_problem,
    invitation_status,
    parse_id,
    parse_role,
    role_change_problem,
    status_change_problem,
)
from core.identity.roles import CustomerRole
from core.identity.scope import Scope, narrow
from portal.customer.nav import return_path

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_admin_prefixes_keep_only_outermost_admin_subtrees() -> None:
    memberships = [
        ("/1/2/", "admin"),
        ("/1/2/5/", "admin"),  # nested in /1/2/
        ("/1/3/", "viewer"),  # not admin
        ("/10/", "admin"),  # "/10/" does not start with "/1/"
        ("", "admin"),  # unknown path: ignored
    ]
    assert admin_prefixes(memberships) == ("/1/2/", "/10/")
    assert admin_prefixes([("/1/", "payer")]) == ()


def test_covers_is_a_subtree_test_not_a_string_prefix_of_ids() -> None:
    assert covers(("/1/2/",), "/1/2/")
    assert covers(("/1/2/",), "/1/2/7/")
    assert not covers(("/1/2/",), "/1/")
    assert not covers(("/1/2/",), "/1/20/")
    assert not covers(("/1/",), "")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", 7),
        (" 12 ", 12),
        ("0", None),
        ("-3", None),
        ("1e3", None),
        ("", None),
        (None, None),
        ("99999999999999999999", None),
        (str(2**31), None),
        (str(2**31 - 1), 2**31 - 1),
        ("٣", None),  # a non-ASCII digit
    ],
)
def test_parse_id(raw: object, expected: int | None) -> None:
    assert parse_id(raw) == expected


def test_parse_role() -> None:
    assert parse_role("approver") is CustomerRole.APPROVER
    assert parse_role("owner") is None
    assert parse_role(None) is None


@pytest.mark.parametrize(
    ("email", "ok"),
    [("a@b.example", True), ("", False), ("no-at-sign", False), ("a b@c.de", False)],
)
def test_email_problem(email: str, ok: bool) -> None:
    assert (email_problem(email) is None) is ok
    assert email_problem("x" * 250 + "@b.de") is not None


def test_invitation_status() -> None:
    later = NOW + timedelta(days=1)
    earlier = NOW - timedelta(seconds=1)
    assert invitation_status(accepted_at=None, revoked_at=None, expires_at=later, now=NOW) == (
        "pending"
    )
    assert invitation_status(accepted_at=None, revoked_at=None, expires_at=earlier, now=NOW) == (
        "expired"
    )
    assert invitation_status(accepted_at=None, revoked_at=None, expires_at=NOW, now=NOW) == (
        "expired"
    )
    assert invitation_status(accepted_at=NOW, revoked_at=None, expires_at=later, now=NOW) == (
        "accepted"
    )
    assert invitation_status(accepted_at=None, revoked_at=NOW, expires_at=earlier, now=NOW) == (
        "revoked"
    )


def test_an_admin_cannot_remove_or_downgrade_their_own_last_admin_role() -> None:
    own = {1: "admin", 2: "viewer"}
    for new_role in (None, "viewer", "payer", "approver"):
        assert role_change_problem(
            actor_id=5, target_id=5, own_roles=own, node_id=1, new_role=new_role
        )
    assert not role_change_problem(
        actor_id=5, target_id=5, own_roles=own, node_id=1, new_role="admin"
    )
    # another admin membership remains: allowed
    two = {1: "admin", 3: "admin"}
    assert not role_change_problem(actor_id=5, target_id=5, own_roles=two, node_id=1, new_role=None)
    # changing a non-admin membership of oneself, or anyone else's: not this rule's business
    assert not role_change_problem(actor_id=5, target_id=5, own_roles=own, node_id=2, new_role=None)
    assert not role_change_problem(actor_id=5, target_id=6, own_roles=own, node_id=1, new_role=None)


def test_status_change_rules() -> None:
    assert status_change_problem(actor_id=1, target_id=1, target_paths=[], prefixes=["/1/"])
    assert not status_change_problem(
        actor_id=1, target_id=2, target_paths=["/1/2/", "/1/3/"], prefixes=["/1/"]
    )
    # a subsidiary's admin cannot deactivate someone who also works elsewhere in the group
    assert status_change_problem(
        actor_id=1, target_id=2, target_paths=["/1/2/", "/1/"], prefixes=["/1/2/"]
    )


def test_return_path_after_switching_entity() -> None:
    assert return_path("/invoices?org=5&status=open") == "/invoices"
    assert return_path("/invoices/123") == "/invoices"
    assert return_path("/admin/users/4") == "/admin/users/4"
    for hostile in ("https://evil.example/", "//evil.example", "/\\evil", "", None, "javascript:1"):
        assert return_path(hostile) == "/"


# ---------------------------------------------------------------------------- narrowing

# A small group: 1 -> (2 -> 4), 3 ; accounts 10@1, 20@2, 40@4, 30@3
PATHS = {1: "/1/", 2: "/1/2/", 3: "/1/3/", 4: "/1/2/4/"}
ACCOUNT_ORG = {10: 1, 20: 2, 40: 4, 30: 3}


def full_scope(roles: dict[int, CustomerRole] | None = None) -> Scope:
    roles = roles or dict.fromkeys(PATHS, CustomerRole.VIEWER)
    return Scope(
        user_id=1,
        organization_ids=frozenset(roles),
        billing_account_ids=frozenset(a for a, o in ACCOUNT_ORG.items() if o in roles),
        role_by_organization=roles,
        account_organization={a: o for a, o in ACCOUNT_ORG.items() if o in roles},
    )


def test_narrow_to_a_subsidiary() -> None:
    scope = full_scope()
    narrowed = narrow(scope, 2, PATHS)
    assert narrowed.organization_ids == {2, 4}
    assert narrowed.billing_account_ids == {20, 40}
    assert set(narrowed.role_by_organization) == {2, 4}
    assert narrowed.account_organization == {20: 2, 40: 4}
    assert narrowed.active_entity == 2
    assert narrowed.visible_organization_ids == {1, 2, 3, 4}
    assert scope.visible_organization_ids == {1, 2, 3, 4}
    assert scope.active_entity is None


def test_narrow_refuses_a_node_outside_the_scope() -> None:
    scope = full_scope({3: CustomerRole.PAYER})
    with pytest.raises(NotFound):
        narrow(scope, 2, PATHS)
    with pytest.raises(NotFound):
        narrow(scope, 99, PATHS)
    with pytest.raises(NotFound):
        narrow(full_scope(), 4, {1: "/1/"})  # unknown path


@given(
    members=st.sets(st.sampled_from(sorted(PATHS)), min_size=1),
    data=st.data(),
)
def test_narrowing_never_widens_and_keeps_roles(members: set[int], data: st.DataObject) -> None:
    roles = {
        o: data.draw(st.sampled_from(list(CustomerRole)))
        for o in PATHS
        if any(PATHS[o].startswith(PATHS[m]) for m in members)
    }
    scope = full_scope(roles)
    node = data.draw(st.sampled_from(sorted(scope.organization_ids)))
    narrowed = narrow(scope, node, PATHS)
    assert node in narrowed.organization_ids
    assert narrowed.organization_ids <= scope.organization_ids
    assert narrowed.billing_account_ids <= scope.billing_account_ids
    assert all(PATHS[o].startswith(PATHS[node]) for o in narrowed.organization_ids)
    for account in narrowed.billing_account_ids:
        assert narrowed.role_for_account(account) == scope.role_for_account(account)
    # narrowing again to the same node changes nothing; the full view is remembered
    again = narrow(narrowed, node, PATHS)
    assert again.organization_ids == narrowed.organization_ids
    assert again.visible_organization_ids == scope.organization_ids
