"""Staff review of drafts: the list with filters and one draft with its lines."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.invoicing.queries import _escape_like
from core.invoicing.tables import Invoice, InvoiceLine

APPROVAL_FILTERS = ("", "pending", "approved", "not_required")
TAX_FILTERS = ("", "pending", "calculated", "estimated", "exempt")


async def list_drafts(
    *, entity: str = "", approval: str = "", tax: str = "", q: str = "", limit: int = 100
) -> tuple[list[dict[str, Any]], int]:
    """Drafts (newest first) matching the filters, and how many match in all."""
    # a draft has no number yet: "number IS NULL" reads the partial index of drafts
    where = (Invoice.status == "draft") & Invoice.number.is_null()
    if entity:
        where &= Invoice.issuing_entity.code == entity
    if approval in APPROVAL_FILTERS and approval:
        where &= Invoice.approval_status == approval
    if tax in TAX_FILTERS and tax:
        where &= Invoice.tax_status == tax
    if q:
        pattern = f"%{_escape_like(q)}%"
        where &= Invoice.billing_account.code.ilike(pattern) | Invoice.billing_account.name.ilike(
            pattern
        )
    rows = (
        await Invoice.select(
            Invoice.id,
            Invoice.currency,
            Invoice.subtotal_minor,
            Invoice.tax_minor,
            Invoice.total_minor,
            Invoice.created_at,
            Invoice.created_by,
            Invoice.tax_status,
            Invoice.approval_status,
            Invoice.approved_by,
            Invoice.billing_account.code.as_alias("account_code"),
            Invoice.billing_account.name.as_alias("account_name"),
            Invoice.issuing_entity.code.as_alias("entity_code"),
        )
        .where(where)
        .order_by(Invoice.id, ascending=False)
        .limit(limit)
    )
    return rows, await Invoice.count().where(where)


async def get_invoice_for_review(invoice_id: int) -> dict[str, Any]:
    if not 0 < invoice_id < 2**31:  # ids are 32-bit serials
        raise NotFound("invoice")
    row = (
        await Invoice.select(
            Invoice.all_columns(),
            Invoice.billing_account.code.as_alias("account_code"),
            Invoice.billing_account.name.as_alias("account_name"),
            Invoice.billing_account.organization.name.as_alias("customer_name"),
            Invoice.billing_account.organization.country.as_alias("customer_country"),
            Invoice.issuing_entity.code.as_alias("entity_code"),
            Invoice.issuing_entity.name.as_alias("entity_name"),
        )
        .where(Invoice.id == invoice_id)
        .first()
    )
    if row is None:
        raise NotFound("invoice")
    row["lines"] = (
        await InvoiceLine.select()
        .where(InvoiceLine.invoice == invoice_id)
        .order_by(InvoiceLine.position)
    )
    return row
