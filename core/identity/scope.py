"""A customer user's scope: the organization nodes and billing accounts they may see,
and the role they hold at each node (memberships apply to the node's subtree).

Every customer query filters through a ``Scope``; an object outside it is not found.
The entity switcher narrows a scope to the subtree of one node it contains (``narrow``);
the narrowed scope remembers which nodes the user could see before narrowing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.errors import NotFound
from core.identity.roles import CustomerRole, at_least, strongest
from core.identity.tables import Membership


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


# One round trip: the user's memberships (with their node's path), every node of those
# subtrees and the billing accounts of those nodes. ``n.root_id = m_node.root_id`` is
# implied by the path prefix (services.create_organization sets both) and lets
# PostgreSQL use the root_id index instead of scanning every node for the LIKE.
_SCOPE_SQL = """
SELECT m.role AS role, mo.path AS membership_path, n.id AS node_id, n.path AS node_path,
       b.id AS account_id
FROM membership m
JOIN customer_organization mo ON mo.id = m.organization
JOIN customer_organization n
  ON n.root_id = mo.root_id AND n.path LIKE mo.path || '%'
LEFT JOIN billing_account b ON b.organization = n.id
WHERE m."user" = {} AND mo.path <> ''
"""


async def _load(user_id: int) -> tuple[Scope, dict[int, str]]:
    """The user's scope and the materialized path of each of its nodes."""
    rows = await Membership.raw(_SCOPE_SQL, user_id)
    memberships = list({(r["membership_path"], CustomerRole(r["role"])) for r in rows})
    if not memberships:
        return Scope(user_id, frozenset(), frozenset()), {}
    nodes = {int(r["node_id"]): r["node_path"] for r in rows}
    roles = subtree_roles(memberships, sorted(nodes.items()))
    accounts = {
        int(r["account_id"]): int(r["node_id"]) for r in rows if r["account_id"] is not None
    }
    scope = Scope(
        user_id=user_id,
        organization_ids=frozenset(roles),
        billing_account_ids=frozenset(accounts),
        role_by_organization=roles,
        account_organization=accounts,
    )
    return scope, nodes


async def load_scope(user_id: int) -> Scope:
    """The user's scope, read fresh on every call (never cached across requests): one
    query for memberships, subtree nodes and billing accounts together."""
    scope, _ = await _load(user_id)
    return scope


async def load_request_scope(user_id: int, entity: int | None) -> tuple[Scope, bool]:
    """The scope of one request in the same single query: narrowed to ``entity`` (the
    entity switcher's choice) when that node is in the scope. The flag is False when an
    ``entity`` was asked for but is no longer visible (the scope is then not narrowed)."""
    scope, paths = await _load(user_id)
    if entity is None:
        return scope, True
    try:
        return narrow(scope, entity, paths), True
    except NotFound:
        return scope, False
