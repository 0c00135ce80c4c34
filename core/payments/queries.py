"""Read side of paying, for customers: what the user may pay, through their scope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from core.identity.tables import CustomerOrganization
from core.invoicing.tables import Invoice
from core.payments.attempts import in_flight_by_invoice

MAX_PAYABLE = 200


def payable_accounts(scope: Scope) -> set[int]:
    return {a for a in scope.billing_account_ids if scope.may(CustomerRole.PAYER, a)}


def may_approve(scope: Scope) -> bool:
    return any(scope.may(CustomerRole.APPROVER, a) for a in scope.billing_account_ids)


async def group_root(scope: Scope) -> int | None:
    """The root organization of the user's customer group (the idempotency scope)."""
    ids = sorted(scope.visible_organization_ids)
    if not ids:
        return None
    row = (
        await CustomerOrganization.select(CustomerOrganization.id, CustomerOrganization.root_id)
        .where(CustomerOrganization.id == ids[0])
        .first()
    )
    return None if row is None else int(row["root_id"] or row["id"])


async def payable_invoices(
    scope: Scope, invoice_ids: Sequence[int] | None = None, limit: int = MAX_PAYABLE
) -> list[dict[str, Any]]:
    """Open invoices of the accounts where the user is at least a payer, oldest due
    first, each with ``available_minor`` (balance minus what other attempts collect)."""
    accounts = payable_accounts(scope)
    where = Invoice.billing_account.is_in(sorted(accounts) or [-1]) & (Invoice.status == "open")
    if invoice_ids is not None:
        where &= Invoice.id.is_in([i for i in invoice_ids if 0 < i <= 2**31 - 1] or [-1])
    rows = await (
        Invoice.select(
            Invoice.id,
            Invoice.number,
            Invoice.currency,
            Invoice.due_date,
            Invoice.balance_minor,
            Invoice.billing_account,
            Invoice.billing_account.name.as_alias("account_name"),
            Invoice.billing_account.organization.name.as_alias("organization_name"),
        )
        .where(where)
        .order_by(Invoice.due_date)
        .order_by(Invoice.id)
        .limit(limit)
    )
    in_flight = await in_flight_by_invoice([r["id"] for r in rows])
    for r in rows:
        r["in_flight_minor"] = in_flight.get(r["id"], 0)
        r["available_minor"] = max(0, r["balance_minor"] - r["in_flight_minor"])
    return rows
