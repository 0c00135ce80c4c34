"""What the customer navigation needs beyond the session: the "Users" link for admins,
the Pay and Approvals links for payers and approvers (rendered in the page, so they
work without JavaScript) and the entity switcher (templates/partials/customer_nav.html).

Customer page handlers merge ``await nav_context(request, access)`` into their template
context; the partial shows nothing of this when the values are absent.
"""

from __future__ import annotations

import re
from typing import Any

from litestar.connection import ASGIConnection

from core.identity.admin import has_admin_role
from core.identity.roles import CustomerRole, at_least
from core.identity.scope import Scope
from core.identity.tables import CustomerOrganization
from core.payments.queries import may_approve, payable_accounts
from portal.auth import current_session

ALL_ENTITIES = "all"
_DETAIL = re.compile(r"^/invoices/\d+$")


def return_path(target: str | None) -> str:
    """Where to go after switching entity: a same-site path without its query (filters
    may name nodes outside the new entity); an invoice page goes back to the list."""
    target = (target or "").split("?", 1)[0].split("#", 1)[0]
    if not target.startswith("/") or target.startswith(("//", "/\\")) or len(target) > 512:
        return "/"
    if not target.isascii() or not target.isprintable():
        return "/"
    if _DETAIL.match(target):
        return "/invoices"
    return target


async def entity_options(scope: Scope) -> list[dict[str, Any]]:
    """The nodes the user can see (before any narrowing), in tree order; empty when
    there is only one (nothing to switch between)."""
    visible = scope.visible_organization_ids
    if len(visible) < 2:
        return []
    return (
        await CustomerOrganization.select(
            CustomerOrganization.id, CustomerOrganization.name, CustomerOrganization.depth
        )
        .where(CustomerOrganization.id.is_in(sorted(visible)))
        .order_by(CustomerOrganization.path)
    )


async def nav_context(request: ASGIConnection, scope: Scope) -> dict[str, Any]:
    session = await current_session(request)
    if session is None or session.kind != "customer":
        return {}
    entities = await entity_options(scope)
    min_depth = min((e["depth"] for e in entities), default=0)
    root = (
        await CustomerOrganization.select(CustomerOrganization.root_id)
        .where(CustomerOrganization.id.is_in(sorted(scope.visible_organization_ids) or [-1]))
        .first()
    )
    root_id = root["root_id"] if root else None
    return {
        "nav_admin": await has_admin_role(session.user_id),
        # The group's SSO settings belong to admins of the group's root.
        # Pure decisions on this request's scope (no query): payer / approver somewhere.
        "nav_may_pay": bool(payable_accounts(scope)),
        "nav_may_approve": may_approve(scope),
        "nav_sso_admin": root_id is not None
        and at_least(scope.role_by_organization.get(root_id), CustomerRole.ADMIN),
        "entities": [{**e, "depth": e["depth"] - min_depth} for e in entities],
        "active_entity": scope.active_entity,
        "entity_return": return_path(request.url.path),
    }
