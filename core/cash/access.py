"""Who may do what in the cash area, checked in the services (not only in the portal).

Staff roles: finance admins do everything and alone approve; billing ops and collections
request write-offs, apply and unapply cash and accept settlements; billing ops (and
finance admins) request refunds; auditors only read; support agents have no access.
The system (matching jobs, the bank-file workbench's automatic rules) may apply cash
and write off residuals within the rules, never approve.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.audit.log import Actor
from core.identity.roles import StaffRole
from core.identity.security import NotPermitted, staff_role

FINANCE_ADMIN = StaffRole.FINANCE_ADMIN.value
BILLING_OPS = StaffRole.BILLING_OPS.value
COLLECTIONS = StaffRole.COLLECTIONS.value
AUDITOR = StaffRole.AUDITOR.value

READERS = frozenset({FINANCE_ADMIN, BILLING_OPS, COLLECTIONS, AUDITOR})
OPERATORS = frozenset({FINANCE_ADMIN, BILLING_OPS, COLLECTIONS})
REFUND_REQUESTERS = frozenset({FINANCE_ADMIN, BILLING_OPS})
APPROVERS = frozenset({FINANCE_ADMIN})


def actor_ref(actor: Actor) -> str:
    """How a requester or approver is recorded: ``staff:12``, ``system:remit``."""
    return f"{actor.type}:{actor.id}"


async def role_of(actor: Actor) -> str:
    if actor.type != "staff" or not actor.id.isdigit():
        return ""
    return await staff_role(int(actor.id))


async def require(actor: Actor, roles: Iterable[str], *, system: bool = False) -> str:
    """The actor's staff role if it is one of ``roles`` (or ``"system"`` for a system
    actor where ``system`` is allowed); otherwise ``NotPermitted``."""
    if actor.type == "system":
        if system:
            return "system"
        raise NotPermitted("This needs a person with the right staff role.")
    role = await role_of(actor)
    if role not in set(roles):
        if role == AUDITOR:
            raise NotPermitted("Auditors have read-only access.")
        raise NotPermitted("Your staff role does not allow this.")
    return role
