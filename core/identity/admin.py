"""Customer administration: a customer admin manages the people of their group.

An admin holds the ``admin`` role at one or more nodes of their group's tree; the
subtrees of those nodes are their *admin area*. Inside it they may list users with their
roles, invite people by email (a single-use link valid for seven days, of which only the
SHA-256 is stored), assign and remove roles per node, revoke invitations, and deactivate
or reactivate users. Anything outside the area — a node, a user without a role inside
it, an invitation to a node outside it, any object of another group — is ``NotFound``.

Pure rules first (plain values, unit-tested), then the services: each one transaction,
each change audited with the acting person.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.crypto import new_token, token_hash
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.passwords import hash_password, password_problem
from core.identity.roles import CUSTOMER_ROLE_LABELS, CustomerRole
from core.identity.tables import CustomerOrganization, Invitation, Membership, User

INVITATION_DAYS = 7
MAX_ID = 2**31 - 1  # ids are PostgreSQL integer (Serial) columns
MAX_TOKEN_LENGTH = 128
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")

# Why an invitation link cannot be used (shown on the public invitation page).
UNUSABLE_REASONS = {
    "invalid": "This invitation link is not valid. Check that you copied the whole link.",
    "expired": "This invitation has expired. Ask your administrator to send a new one.",
    "accepted": "This invitation has already been used. Sign in with your account instead.",
    "revoked": "This invitation was withdrawn by your administrator.",
    "other_group": (
        "This email address already belongs to an account of another organization, so it "
        "cannot join this one. Ask your administrator to invite another address."
    ),
    "inactive": (
        "Your account has been deactivated. Ask your administrator to reactivate it; "
        "the invitation stays valid until it expires."
    ),
    "sign_in": (
        "You already have an account with this email address. Sign in, and the "
        "invitation can then be accepted."
    ),
    "wrong_user": (
        "You are signed in as someone else. Sign out, then open the invitation link again."
    ),
    "already_member": "You already hold a role at this organization.",
}


# ---------------------------------------------------------------------------- pure rules


def admin_prefixes(memberships: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Pure: the materialized paths of the nodes where the role is admin, without those
    nested in another one (each prefix stands for a subtree)."""
    paths = sorted({path for path, role in memberships if path and role == CustomerRole.ADMIN})
    result: list[str] = []
    for path in paths:  # an ancestor's path sorts before its descendants'
        if not any(path.startswith(prefix) for prefix in result):
            result.append(path)
    return tuple(result)


def covers(prefixes: Iterable[str], path: str) -> bool:
    """Pure: the node with this path is inside one of the subtrees."""
    return bool(path) and any(path.startswith(prefix) for prefix in prefixes)


def parse_id(value: Any) -> int | None:
    """Pure: a positive database id from form text, or None."""
    text = str(value if value is not None else "").strip()
    if not _DIGITS.match(text):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def parse_role(value: Any) -> CustomerRole | None:
    try:
        return CustomerRole(str(value or "").strip())
    except ValueError:
        return None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    if not email:
        return "Enter the person's email address."
    if len(email) > 254 or not _EMAIL.match(email):
        return "Enter a valid email address, like name@example.com."
    return None


def name_problem(name: str) -> str | None:
    if not name:
        return "Enter your name."
    if len(name) > 200:
        return "Use at most 200 characters."
    return None


def invitation_status(
    *,
    accepted_at: datetime | None,
    revoked_at: datetime | None,
    expires_at: datetime,
    now: datetime,
) -> str:
    """Pure: ``accepted``, ``revoked``, ``expired`` or ``pending``."""
    if accepted_at is not None:
        return "accepted"
    if revoked_at is not None:
        return "revoked"
    if expires_at <= now:
        return "expired"
    return "pending"


def role_change_problem(
    *,
    actor_id: int,
    target_id: int,
    own_roles: Mapping[int, str],
    node_id: int,
    new_role: str | None,
) -> str | None:
    """Pure: an admin may not remove (``new_role`` None) or downgrade their own last
    admin membership. ``own_roles`` maps the target's membership nodes to roles."""
    if actor_id != target_id or own_roles.get(node_id) != CustomerRole.ADMIN:
        return None
    if new_role == CustomerRole.ADMIN:
        return None
    others = [n for n, role in own_roles.items() if role == CustomerRole.ADMIN and n != node_id]
    if others:
        return None
    return (
        "You cannot remove or downgrade your own last administrator role. "
        "Ask another administrator to do it."
    )


def status_change_problem(
    *, actor_id: int, target_id: int, target_paths: Iterable[str], prefixes: Iterable[str]
) -> str | None:
    """Pure: who may deactivate or reactivate whom. Not oneself; and only a user whose
    every role lies inside the actor's admin area (a subsidiary's admin cannot lock out
    someone who also works for the rest of the group)."""
    if actor_id == target_id:
        return "You cannot deactivate or reactivate your own account."
    prefixes = tuple(prefixes)
    if any(not covers(prefixes, path) for path in target_paths):
        return (
            "This person also holds roles outside the part of the group you administer; "
            "an administrator of the whole group can change their account."
        )
    return None


# ---------------------------------------------------------------------------- read models


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    name: str
    depth: int
    path: str


@dataclass(frozen=True, slots=True)
class AdminArea:
    """What one admin may manage: their group and the subtrees where they are admin."""

    user_id: int
    root_id: int
    prefixes: tuple[str, ...]
    nodes: tuple[Node, ...]  # every node inside the prefixes, in tree order

    def node(self, node_id: int | None) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def covers(self, path: str) -> bool:
        return covers(self.prefixes, path)

    @property
    def whole_group(self) -> bool:
        return f"/{self.root_id}/" in self.prefixes


@dataclass(frozen=True, slots=True)
class RoleAt:
    node: Node
    role: str

    @property
    def label(self) -> str:
        return CUSTOMER_ROLE_LABELS[CustomerRole(self.role)]


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    name: str
    email: str
    is_active: bool
    last_login_at: datetime | None
    roles: tuple[RoleAt, ...]  # inside the admin area only
    roles_elsewhere: bool = False  # also holds roles outside the admin area
    role_paths: tuple[str, ...] = ()  # the paths of every node they hold a role at


@dataclass(frozen=True, slots=True)
class InvitationRow:
    id: int
    email: str
    node: Node
    role: str
    status: str
    invited_by: str
    created_at: datetime
    expires_at: datetime

    @property
    def label(self) -> str:
        return CUSTOMER_ROLE_LABELS[CustomerRole(self.role)]


@dataclass(frozen=True, slots=True)
class Invited:
    invitation_id: int
    token: str  # only ever mailed; the database keeps its hash
    email: str
    organization_name: str
    role: CustomerRole
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RoleChange:
    user_id: int
    node_id: int
    role: str | None  # None: removed
    changed: bool
    self_change: bool


@dataclass(frozen=True, slots=True)
class InvitationView:
    """What the public invitation page shows for a token."""

    status: str  # pending, expired, accepted, revoked
    email: str
    organization_name: str
    role: str
    invited_by: str
    expires_at: datetime
    existing_user_id: int | None = None
    existing_user: str = "none"  # none, same_group, other_group, inactive

    @property
    def role_label(self) -> str:
        return CUSTOMER_ROLE_LABELS[CustomerRole(self.role)]


@dataclass(frozen=True, slots=True)
class Accepted:
    user_id: int
    created: bool  # a new account (else a membership added to an existing one)
    email: str


class InvitationUnusable(Conflict):
    """The invitation cannot be used now; ``reason`` is a key of ``UNUSABLE_REASONS``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(UNUSABLE_REASONS.get(reason, UNUSABLE_REASONS["invalid"]))


@dataclass
class _Target:
    """A user as an admin sees them, with every membership (locked when asked)."""

    id: int
    name: str
    email: str
    is_active: bool
    last_login_at: datetime | None
    memberships: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------- services


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _subtree_condition(column: Any, prefixes: Iterable[str]) -> Any:
    condition = None
    for prefix in prefixes:
        clause = column.like(prefix + "%")
        condition = clause if condition is None else condition | clause
    return condition


async def has_admin_role(user_id: int) -> bool:
    """Cheap check for the navigation: does the user hold the admin role anywhere in
    their own group?"""
    return await admin_area(user_id, with_nodes=False) is not None


async def admin_area(user_id: int, *, with_nodes: bool = True) -> AdminArea | None:
    """The admin area of an active user, or None when they are admin nowhere."""
    user = await User.select(User.organization, User.is_active).where(User.id == user_id).first()
    if user is None or not user["is_active"]:
        return None
    rows = await Membership.select(
        Membership.role,
        Membership.organization.path.as_alias("path"),
        Membership.organization.root_id.as_alias("root_id"),
    ).where((Membership.user == user_id) & (Membership.role == CustomerRole.ADMIN.value))
    prefixes = admin_prefixes(
        (r["path"], r["role"]) for r in rows if r["root_id"] == user["organization"]
    )
    if not prefixes:
        return None
    nodes: tuple[Node, ...] = ()
    if with_nodes:
        found = (
            await CustomerOrganization.select(
                CustomerOrganization.id,
                CustomerOrganization.name,
                CustomerOrganization.depth,
                CustomerOrganization.path,
            )
            .where(_subtree_condition(CustomerOrganization.path, prefixes))
            .order_by(CustomerOrganization.path)
        )
        nodes = tuple(Node(r["id"], r["name"], r["depth"], r["path"]) for r in found)
    return AdminArea(user_id, int(user["organization"]), prefixes, nodes)


async def require_admin_area(user_id: int) -> AdminArea:
    area = await admin_area(user_id)
    if area is None:
        raise NotFound("page")
    return area


async def _memberships_of(user_ids: list[int], lock: bool = False) -> list[dict[str, Any]]:
    query = Membership.select(
        Membership.id,
        Membership.user,
        Membership.organization,
        Membership.role,
        Membership.organization.name.as_alias("name"),
        Membership.organization.depth.as_alias("depth"),
        Membership.organization.path.as_alias("path"),
    ).where(Membership.user.is_in(user_ids or [-1]))
    return await (for_update(query) if lock else query)


async def _target(area: AdminArea, user_id: int, lock: bool = False) -> _Target:
    """A user the admin may see (same group, and a role inside the area unless the area
    is the whole group), else ``NotFound``."""
    if not 0 < user_id <= MAX_ID:
        raise NotFound("user")
    query = User.select(
        User.id, User.name, User.email, User.is_active, User.last_login_at, User.organization
    ).where((User.id == user_id) & (User.organization == area.root_id))
    row = await (for_update(query) if lock else query).first()
    if row is None:
        raise NotFound("user")
    memberships = await _memberships_of([user_id], lock=lock)
    if not area.whole_group and not any(area.covers(m["path"]) for m in memberships):
        raise NotFound("user")
    return _Target(
        row["id"], row["name"], row["email"], row["is_active"], row["last_login_at"], memberships
    )


def _row(area: AdminArea, target: _Target) -> UserRow:
    inside = sorted(
        (m for m in target.memberships if area.covers(m["path"])), key=lambda m: m["path"]
    )
    return UserRow(
        id=target.id,
        name=target.name,
        email=target.email,
        is_active=bool(target.is_active),
        last_login_at=target.last_login_at,
        roles=tuple(
            RoleAt(Node(m["organization"], m["name"], m["depth"], m["path"]), m["role"])
            for m in inside
        ),
        roles_elsewhere=any(not area.covers(m["path"]) for m in target.memberships),
        role_paths=tuple(m["path"] for m in target.memberships),
    )


async def list_users(area: AdminArea) -> list[UserRow]:
    """The group's users the admin may manage, with their roles inside the area."""
    inside = await Membership.select(Membership.user).where(
        _subtree_condition(Membership.organization.path, area.prefixes)
        & (Membership.user.organization == area.root_id)
    )
    where = User.organization == area.root_id
    if not area.whole_group:
        where &= User.id.is_in(sorted({m["user"] for m in inside}) or [-1])
    users = await User.select(
        User.id, User.name, User.email, User.is_active, User.last_login_at
    ).where(where)
    memberships = await _memberships_of([u["id"] for u in users])
    by_user: dict[int, list[dict[str, Any]]] = {}
    for m in memberships:
        by_user.setdefault(m["user"], []).append(m)
    rows = [
        _row(
            area,
            _Target(
                u["id"],
                u["name"],
                u["email"],
                u["is_active"],
                u["last_login_at"],
                by_user.get(u["id"], []),
            ),
        )
        for u in users
    ]
    return sorted(rows, key=lambda r: (r.name.lower(), r.email))


async def get_user(area: AdminArea, user_id: int) -> UserRow:
    return _row(area, await _target(area, user_id))


def _node_in_area(area: AdminArea, raw: Any) -> Node:
    """A node id from a form or path: malformed is a field error, outside the area 404."""
    node_id = parse_id(raw)
    if node_id is None:
        raise ValidationFailed({"node": "Choose an organization."})
    node = area.node(node_id)
    if node is None:
        raise NotFound("organization")
    return node


async def set_role(
    actor_user_id: int, user_id: int, node_raw: Any, role_raw: Any, actor: Actor
) -> RoleChange:
    """Give a user a role at a node of the admin area (replacing their role there)."""
    role = parse_role(role_raw)
    async with transaction():
        area = await require_admin_area(actor_user_id)
        target = await _target(area, user_id, lock=True)
        node = _node_in_area(area, node_raw)
        if role is None:
            raise ValidationFailed({"role": "Choose a role."})
        own = {m["organization"]: m["role"] for m in target.memberships}
        problem = role_change_problem(
            actor_id=actor_user_id,
            target_id=target.id,
            own_roles=own,
            node_id=node.id,
            new_role=role.value,
        )
        if problem:
            raise ValidationFailed({"role": problem})
        previous = own.get(node.id)
        if previous == role.value:
            return RoleChange(target.id, node.id, role.value, False, actor_user_id == target.id)
        if previous is None:
            await Membership.insert(
                Membership(user=target.id, organization=node.id, role=role.value, created_at=_now())
            )
        else:
            await Membership.update({Membership.role: role.value}).where(
                (Membership.user == target.id) & (Membership.organization == node.id)
            )
        await record(
            AuditRecord(
                actor=actor,
                action="membership.granted",
                object_type="user",
                object_id=target.id,
                data={
                    "organization_id": node.id,
                    "role": role.value,
                    "previous_role": previous or "",
                },
            )
        )
    return RoleChange(target.id, node.id, role.value, True, actor_user_id == target.id)


async def remove_role(actor_user_id: int, user_id: int, node_raw: Any, actor: Actor) -> RoleChange:
    async with transaction():
        area = await require_admin_area(actor_user_id)
        target = await _target(area, user_id, lock=True)
        node = area.node(parse_id(node_raw))  # from the URL path: unknown is not found
        own = {m["organization"]: m["role"] for m in target.memberships}
        if node is None or node.id not in own:
            raise NotFound("role")
        problem = role_change_problem(
            actor_id=actor_user_id,
            target_id=target.id,
            own_roles=own,
            node_id=node.id,
            new_role=None,
        )
        if problem:
            raise ValidationFailed({"role": problem})
        await Membership.delete().where(
            (Membership.user == target.id) & (Membership.organization == node.id)
        )
        await record(
            AuditRecord(
                actor=actor,
                action="membership.revoked",
                object_type="user",
                object_id=target.id,
                data={"organization_id": node.id, "role": own[node.id]},
            )
        )
    return RoleChange(target.id, node.id, None, True, actor_user_id == target.id)


async def set_active(actor_user_id: int, user_id: int, active: bool, actor: Actor) -> bool:
    """Deactivate or reactivate a user; returns whether anything changed. The caller
    ends the user's sessions after a deactivation."""
    async with transaction():
        area = await require_admin_area(actor_user_id)
        target = await _target(area, user_id, lock=True)
        problem = status_change_problem(
            actor_id=actor_user_id,
            target_id=target.id,
            target_paths=[m["path"] for m in target.memberships],
            prefixes=area.prefixes,
        )
        if problem:
            raise ValidationFailed({"status": problem})
        if bool(target.is_active) == active:
            return False
        await User.update({User.is_active: active}).where(User.id == target.id)
        await record(
            AuditRecord(
                actor=actor,
                action="user.reactivated" if active else "user.deactivated",
                object_type="user",
                object_id=target.id,
            )
        )
    return True


async def invite(
    actor_user_id: int, *, email: str, node_raw: Any, role_raw: Any, actor: Actor
) -> Invited:
    """Record an invitation to join at a node with a role; the caller mails the link
    (``/invitations/<token>``) after this returns (the transaction has committed)."""
    email = normalize_email(email or "")[:320]
    errors: dict[str, str] = {}
    if problem := email_problem(email):
        errors["email"] = problem
    role = parse_role(role_raw)
    if role is None:
        errors["role"] = "Choose a role."
    if parse_id(node_raw) is None:
        errors["node"] = "Choose an organization."
    async with transaction():
        area = await require_admin_area(actor_user_id)
        if errors:
            raise ValidationFailed(errors)
        node = _node_in_area(area, node_raw)
        assert role is not None
        existing = (
            await User.select(User.id, User.organization, User.is_active)
            .where(User.email == email)
            .first()
        )
        if existing is not None and existing["organization"] == area.root_id:
            if not existing["is_active"]:
                raise ValidationFailed(
                    {"email": "This person's account is deactivated. Reactivate it instead."}
                )
            if await Membership.exists().where(
                (Membership.user == existing["id"]) & (Membership.organization == node.id)
            ):
                raise ValidationFailed(
                    {"email": f"This person already holds a role at {node.name}."}
                )
        # (An address of another group is refused when the link is used, so an admin
        # cannot probe which addresses other customers use.)
        now = _now()
        pending = await Invitation.select(
            Invitation.accepted_at, Invitation.revoked_at, Invitation.expires_at
        ).where(
            (Invitation.email == email)
            & (Invitation.organization == node.id)
            & Invitation.accepted_at.is_null()
            & Invitation.revoked_at.is_null()
        )
        if any(_aware(p["expires_at"]) > now for p in pending):
            raise ValidationFailed(
                {
                    "email": "An invitation for this address to this organization is already "
                    "pending. Revoke it first to send a new one."
                }
            )
        token = new_token()
        expires_at = now + timedelta(days=INVITATION_DAYS)
        [row] = await Invitation.insert(
            Invitation(
                email=email,
                organization=node.id,
                role=role.value,
                token_hash=token_hash(token),
                invited_by=actor_user_id,
                expires_at=expires_at,
                created_at=now,
            )
        )
        await record(
            AuditRecord(
                actor=actor,
                action="invitation.created",
                object_type="invitation",
                object_id=row["id"],
                data={
                    "email": email,
                    "organization_id": node.id,
                    "role": role.value,
                    "expires_at": expires_at.isoformat(),
                },
            )
        )
    return Invited(int(row["id"]), token, email, node.name, role, expires_at)


async def list_invitations(area: AdminArea, limit: int = 200) -> list[InvitationRow]:
    """Invitations to nodes of the admin area: pending first, then the most recent."""
    rows = (
        await Invitation.select(
            Invitation.id,
            Invitation.email,
            Invitation.organization,
            Invitation.role,
            Invitation.created_at,
            Invitation.expires_at,
            Invitation.accepted_at,
            Invitation.revoked_at,
            Invitation.organization.name.as_alias("name"),
            Invitation.organization.depth.as_alias("depth"),
            Invitation.organization.path.as_alias("path"),
            Invitation.invited_by.name.as_alias("invited_by_name"),
        )
        .where(_subtree_condition(Invitation.organization.path, area.prefixes))
        .order_by(Invitation.id, ascending=False)
        .limit(limit)
    )
    now = _now()
    result = [
        InvitationRow(
            id=r["id"],
            email=r["email"],
            node=Node(r["organization"], r["name"], r["depth"], r["path"]),
            role=r["role"],
            status=invitation_status(
                accepted_at=r["accepted_at"],
                revoked_at=r["revoked_at"],
                expires_at=_aware(r["expires_at"]),
                now=now,
            ),
            invited_by=r["invited_by_name"] or "",
            created_at=r["created_at"],
            expires_at=_aware(r["expires_at"]),
        )
        for r in rows
    ]
    return sorted(result, key=lambda i: i.status != "pending")


async def revoke_invitation(actor_user_id: int, invitation_id: int, actor: Actor) -> None:
    async with transaction():
        area = await require_admin_area(actor_user_id)
        if not 0 < invitation_id <= MAX_ID:
            raise NotFound("invitation")
        row = await for_update(
            Invitation.select(
                Invitation.id,
                Invitation.accepted_at,
                Invitation.revoked_at,
                Invitation.expires_at,
                Invitation.email,
                Invitation.organization.path.as_alias("path"),
            ).where(Invitation.id == invitation_id)
        ).first()
        if row is None or not area.covers(row["path"]):
            raise NotFound("invitation")
        status = invitation_status(
            accepted_at=row["accepted_at"],
            revoked_at=row["revoked_at"],
            expires_at=_aware(row["expires_at"]),
            now=_now(),
        )
        if status != "pending":
            raise Conflict(f"This invitation is already {status}; there is nothing to revoke.")
        await Invitation.update({Invitation.revoked_at: _now()}).where(
            Invitation.id == invitation_id
        )
        await record(
            AuditRecord(
                actor=actor,
                action="invitation.revoked",
                object_type="invitation",
                object_id=invitation_id,
                data={"email": row["email"]},
            )
        )


# ---------------------------------------------------------------------------- accepting


def _token_ok(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable()


_INVITATION_COLUMNS = (
    Invitation.id,
    Invitation.email,
    Invitation.role,
    Invitation.organization,
    Invitation.expires_at,
    Invitation.accepted_at,
    Invitation.revoked_at,
    Invitation.organization.name.as_alias("organization_name"),
    Invitation.organization.root_id.as_alias("root_id"),
    Invitation.invited_by.name.as_alias("invited_by_name"),
)


async def invitation_for_token(token: str) -> InvitationView:
    """What the invitation link shows; ``InvitationUnusable("invalid")`` for an unknown
    token (expired, used and revoked ones are returned with that status)."""
    if not _token_ok(token):
        raise InvitationUnusable("invalid")
    row = (
        await Invitation.select(*_INVITATION_COLUMNS)
        .where(Invitation.token_hash == token_hash(token))
        .first()
    )
    if row is None:
        raise InvitationUnusable("invalid")
    status = invitation_status(
        accepted_at=row["accepted_at"],
        revoked_at=row["revoked_at"],
        expires_at=_aware(row["expires_at"]),
        now=_now(),
    )
    existing = (
        await User.select(User.id, User.organization, User.is_active)
        .where(User.email == row["email"])
        .first()
    )
    kind = "none"
    if existing is not None:
        if existing["organization"] != row["root_id"]:
            kind = "other_group"
        elif not existing["is_active"]:
            kind = "inactive"
        else:
            kind = "same_group"
    return InvitationView(
        status=status,
        email=row["email"],
        organization_name=row["organization_name"],
        role=row["role"],
        invited_by=row["invited_by_name"] or "",
        expires_at=_aware(row["expires_at"]),
        existing_user_id=existing["id"] if existing else None,
        existing_user=kind,
    )


async def accept_invitation(
    token: str,
    *,
    name: str = "",
    password: str = "",
    signed_in_user_id: int | None = None,
    actor: Actor,
) -> Accepted:
    """Use an invitation once. A new person gets an account (name + password); a person
    who already has an account in the same group must be signed in as that account,
    and gets the membership. Either way the invitation is then used up."""
    if not _token_ok(token):
        raise InvitationUnusable("invalid")
    name = " ".join((name or "").split())
    password = password or ""
    async with transaction():
        row = await for_update(
            Invitation.select(*_INVITATION_COLUMNS).where(
                Invitation.token_hash == token_hash(token)
            )
        ).first()
        if row is None:
            raise InvitationUnusable("invalid")
        status = invitation_status(
            accepted_at=row["accepted_at"],
            revoked_at=row["revoked_at"],
            expires_at=_aware(row["expires_at"]),
            now=_now(),
        )
        if status != "pending":
            raise InvitationUnusable(status)
        existing = await for_update(
            User.select(User.id, User.organization, User.is_active).where(
                User.email == row["email"]
            )
        ).first()
        now = _now()
        if existing is not None:
            if existing["organization"] != row["root_id"]:
                raise InvitationUnusable("other_group")
            if not existing["is_active"]:
                raise InvitationUnusable("inactive")
            if signed_in_user_id is None:
                raise InvitationUnusable("sign_in")
            if signed_in_user_id != existing["id"]:
                raise InvitationUnusable("wrong_user")
            if await Membership.exists().where(
                (Membership.user == existing["id"])
                & (Membership.organization == row["organization"])
            ):
                raise InvitationUnusable("already_member")
            user_id, created = int(existing["id"]), False
        else:
            errors = {}
            if problem := name_problem(name):
                errors["name"] = problem
            if problem := password_problem(password):
                errors["password"] = problem
            if errors:
                raise ValidationFailed(errors)
            [user] = await User.insert(
                User(
                    email=row["email"],
                    name=name,
                    organization=row["root_id"],
                    password_hash=hash_password(password),
                    created_at=now,
                )
            )
            user_id, created = int(user["id"]), True
        await Membership.insert(
            Membership(
                user=user_id, organization=row["organization"], role=row["role"], created_at=now
            )
        )
        await Invitation.update(
            {Invitation.accepted_at: now, Invitation.accepted_user: user_id}
        ).where(Invitation.id == row["id"])
        who = Actor(
            type="customer",
            id=str(user_id),
            on_behalf_of=actor.on_behalf_of,
            ip=actor.ip,
            user_agent=actor.user_agent,
        )
        await record(
            AuditRecord(
                actor=who,
                action="invitation.accepted",
                object_type="invitation",
                object_id=row["id"],
                data={"user_id": user_id, "new_account": created},
            )
        )
        await record(
            AuditRecord(
                actor=who,
                action="membership.granted",
                object_type="user",
                object_id=user_id,
                data={
                    "organization_id": row["organization"],
                    "role": row["role"],
                    "invitation_id": row["id"],
                },
            )
        )
    return Accepted(user_id, created, row["email"])
