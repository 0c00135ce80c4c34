"""A customer user's scope: the organization nodes and billing accounts they may see,
and the role they hold at each node (memberships apply to the node's subtree).

Every customer query filters through a ``Scope``; an object outside it is not found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.identity.roles import CustomerRole, at_least, strongest
from core.identity.tables import BillingAccount, CustomerOrganization, Membership


@dataclass(frozen=True, slots=True)
class Scope:
    user_id: int
    organization_ids: frozenset[int]
    billing_account_ids: frozenset[int]
    role_by_organization: dict[int, CustomerRole] = field(default_factory=dict)
    account_organization: dict[int, int] = field(default_factory=dict)

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
