"""A customer user's scope: the organization nodes and billing accounts they may see,
and the role they hold at each node (memberships apply to the node's subtree).

Every customer query filters through a ``Scope``; an object outside it is not found.
The entity switcher narrows a scope to the subtree of one node it contains (``narrow``);
the narrowed scope remembers which nodes the user could see before narrowing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.errors import NotFound
from core.identity.roles import CustomerRole, at_least, strongest
from core.identity.tables import BillingAccount, CustomerOrganization, Membership


@dataclass(frozen=True, slots=True)
class Scope:
    user_id: int
    organization_ids: frozenset[int]
    billing_account_ids: frozenset[int]
    role_by_organization: dict[int, CustomerRole] = field(default_factory=dict)
    account_organization: dict[int, int] = field(default_factory=dict)
    # Set by ``narrow``: the node chosen in the entity switcher, and the nodes the user
    # could see before narrowing (None: this scope is not narrowed).
    active_entity: int | None = None
    all_organization_ids: frozenset[int] | None = None

    @property
    def visible_organization_ids(self) -> frozenset[int]:
        """Every node the user may see, whichever entity is chosen in the switcher."""
        if self.all_organization_ids is None:
            return self.organization_ids
        return self.all_organization_ids

    def role_for_account(self, billing_account_id: int) -> CustomerRole | None:
        org = self.account_organization.get(billing_account_id)
        return None if org is None else self.role_by_organization.get(org)

    def may(self, required: CustomerRole, billing_account_id: int) -> bool:
        return at_least(self.role_for_account(billing_account_id), required)

    @property
    def empty(self) -> bool:
        return not self.billing_account_ids


def subtree_roles(
    memberships: list[tuple[str, CustomerRole]], nodes: list[tuple[int, str]]
) -> dict[int, CustomerRole]:
    """Pure: for each node (id, path), the strongest role among memberships whose node
    path is a prefix of the node's path."""
    result: dict[int, CustomerRole] = {}
    for node_id, path in nodes:
        role = strongest([r for prefix, r in memberships if path.startswith(prefix)])
        if role is not None:
            result[node_id] = role
    return result


def narrow(scope: Scope, node_id: int, paths: Mapping[int, str]) -> Scope:
    """Pure: the part of ``scope`` in the subtree of ``node_id``, one of the scope's nodes
    (``paths`` maps the scope's node ids to their materialized paths). A node outside the
    scope, or of unknown path, is ``NotFound``."""
    prefix = paths.get(node_id)
    if node_id not in scope.organization_ids or not prefix:
        raise NotFound("organization")
    organizations = frozenset(
        o for o in scope.organization_ids if paths.get(o, "").startswith(prefix)
    )
    accounts = frozenset(
        a for a in scope.billing_account_ids if scope.account_organization.get(a) in organizations
    )
    return Scope(
        user_id=scope.user_id,
        organization_ids=organizations,
        billing_account_ids=accounts,
        role_by_organization={
            o: r for o, r in scope.role_by_organization.items() if o in organizations
        },
        account_organization={a: o for a, o in scope.account_organization.items() if a in accounts},
        active_entity=node_id,
        all_organization_ids=scope.visible_organization_ids,
    )


async def organization_paths(node_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(node_ids))
    if not ids:
        return {}
    rows = await CustomerOrganization.select(
        CustomerOrganization.id, CustomerOrganization.path
    ).where(CustomerOrganization.id.is_in(ids))
    return {r["id"]: r["path"] for r in rows}


async def narrowed_scope(scope: Scope, node_id: int) -> Scope | None:
    """``scope`` narrowed to the subtree of ``node_id``, or None when the node is not
    (or no longer) in the scope."""
    if node_id not in scope.organization_ids:
        return None
    paths = await organization_paths(scope.organization_ids)
    try:
        return narrow(scope, node_id, paths)
    except NotFound:
        return None


async def load_scope(user_id: int) -> Scope:
    rows = await Membership.select(
        Membership.role, Membership.organization.path.as_alias("path")
    ).where(Membership.user == user_id)
    memberships = [(r["path"], CustomerRole(r["role"])) for r in rows if r["path"]]
    if not memberships:
        return Scope(user_id, frozenset(), frozenset())
    condition = None
    for prefix, _ in memberships:
        clause = CustomerOrganization.path.like(prefix + "%")
        condition = clause if condition is None else condition | clause
    nodes = await CustomerOrganization.select(
        CustomerOrganization.id, CustomerOrganization.path
    ).where(condition)
    roles = subtree_roles(memberships, [(n["id"], n["path"]) for n in nodes])
    accounts = await BillingAccount.select(BillingAccount.id, BillingAccount.organization).where(
        BillingAccount.organization.is_in(list(roles) or [-1])
    )
    return Scope(
        user_id=user_id,
        organization_ids=frozenset(roles),
        billing_account_ids=frozenset(a["id"] for a in accounts),
        role_by_organization=roles,
        account_organization={a["id"]: a["organization"] for a in accounts},
    )
