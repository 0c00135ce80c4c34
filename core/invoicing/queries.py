"""Read side of invoicing for customers: every query goes through a ``Scope``.

A filter naming an organization node or billing account outside the scope, or an
invoice id outside it, is ``NotFound`` — indistinguishable from a missing object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from piccolo.columns.combination import Where
from piccolo.query.functions.aggregate import Count, Min, Sum
from piccolo.querystring import QueryString

from core.errors import NotFound
from core.identity.scope import Scope
from core.identity.tables import BillingAccount, CustomerOrganization
from core.invoicing.tables import Invoice, InvoiceLine
from core.payments.tables import Allocation

SORTS: dict[str, tuple[Any, bool]] = {
    "due_date": (Invoice.due_date, True),
    "-due_date": (Invoice.due_date, False),
    "amount": (Invoice.total_minor, True),
    "-amount": (Invoice.total_minor, False),
    "number": (Invoice.number, True),
    "-number": (Invoice.number, False),
}
STATUS_FILTERS = ("open", "overdue", "paid", "void", "uncollectible")
PER_PAGE_CHOICES = (10, 25, 50, 100)


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    status: str | None = None  # one of STATUS_FILTERS
    organization_id: int | None = None
    billing_account_id: int | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    q: str = ""  # text search on the invoice number
    sort: str = "-due_date"
    page: int = 1
    per_page: int = 25


@dataclass(frozen=True, slots=True)
class InvoicePage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pages", max(1, -(-self.total // self.per_page)))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _scoped_where(scope: Scope, f: InvoiceFilter, today: date) -> Where | Any:
    accounts = set(scope.billing_account_ids)
    if f.billing_account_id is not None:
        if f.billing_account_id not in accounts:
            raise NotFound("billing account")
        accounts = {f.billing_account_id}
    if f.organization_id is not None:
        if f.organization_id not in scope.organization_ids:
            raise NotFound("organization")
        node = (
            await CustomerOrganization.select(CustomerOrganization.path)
            .where(CustomerOrganization.id == f.organization_id)
            .first()
        )
        subtree = await CustomerOrganization.select(CustomerOrganization.id).where(
            CustomerOrganization.path.like((node or {"path": "-"})["path"] + "%")
        )
        nodes = {r["id"] for r in subtree}
        accounts = {a for a in accounts if scope.account_organization.get(a) in nodes}
    where = Invoice.billing_account.is_in(sorted(accounts) or [-1]) & (Invoice.status != "draft")
    if f.status == "overdue":
        where &= (Invoice.status == "open") & (Invoice.due_date < today)
    elif f.status:
        where &= Invoice.status == f.status
    if f.issued_from:
        where &= Invoice.issue_date >= f.issued_from
    if f.issued_to:
        where &= Invoice.issue_date <= f.issued_to
    if f.q.strip():
        where &= Invoice.number.ilike(f"%{_escape_like(f.q.strip())}%")
    return where


LIST_COLUMNS = (
    Invoice.id,
    Invoice.number,
    Invoice.status,
    Invoice.currency,
    Invoice.issue_date,
    Invoice.due_date,
    Invoice.total_minor,
    Invoice.balance_minor,
    Invoice.billing_account.name.as_alias("account_name"),
    Invoice.billing_account.organization.name.as_alias("organization_name"),
)


_TOTAL = "_total"  # the window-function column carrying the filtered row count


async def _page_rows(where: Any, f: InvoiceFilter, page: int) -> list[dict[str, Any]]:
    """One page of rows, each carrying the count of all matching rows
    (``count(*) OVER ()`` is computed before LIMIT/OFFSET)."""
    column, ascending = SORTS.get(f.sort, SORTS["-due_date"])
    return (
        await Invoice.select(*LIST_COLUMNS, QueryString("COUNT(*) OVER ()").as_alias(_TOTAL))
        .where(where)
        .order_by(column, ascending=ascending)
        .order_by(Invoice.id, ascending=ascending)
        .limit(f.per_page)
        .offset((page - 1) * f.per_page)
    )


async def list_invoices(scope: Scope, f: InvoiceFilter, today: date) -> InvoicePage:
    """One query for the page and the total; a page past the end (no rows, so no total)
    costs a count and a second page query, and shows the last page."""
    where = await _scoped_where(scope, f, today)
    page = max(1, f.page)
    rows = await _page_rows(where, f, page)
    if rows:
        total = int(rows[0][_TOTAL])
    else:
        total = await Invoice.count().where(where) if page > 1 else 0
        last = max(1, -(-total // f.per_page))
        if total and last != page:
            page = last
            rows = await _page_rows(where, f, page)
            total = int(rows[0][_TOTAL]) if rows else total
        else:
            page = min(page, last)
    for r in rows:
        del r[_TOTAL]
    return InvoicePage(rows=rows, total=total, page=page, per_page=f.per_page)


async def export_rows(scope: Scope, f: InvoiceFilter, today: date) -> list[dict[str, Any]]:
    where = await _scoped_where(scope, f, today)
    column, ascending = SORTS.get(f.sort, SORTS["-due_date"])
    return (
        await Invoice.select(*LIST_COLUMNS)
        .where(where)
        .order_by(column, ascending=ascending)
        .order_by(Invoice.id, ascending=ascending)
    )


MAX_ID = 2**31 - 1  # ids are PostgreSQL "serial" (int4)


async def get_invoice(scope: Scope, invoice_id: int) -> dict[str, Any]:
    if not 0 < invoice_id <= MAX_ID:
        raise NotFound("invoice")
    row = (
        await Invoice.select(
            *LIST_COLUMNS,
            Invoice.subtotal_minor,
            Invoice.tax_minor,
            Invoice.paid_minor,
            Invoice.memo,
            Invoice.billing_account.id.as_alias("billing_account_id"),
            Invoice.billing_account.code.as_alias("account_code"),
            Invoice.issuing_entity.legal_name.as_alias("issuer_name"),
            Invoice.issuing_entity.address.as_alias("issuer_address"),
            Invoice.issuing_entity.tax_registration.as_alias("issuer_tax_registration"),
        )
        .where(
            (Invoice.id == invoice_id)
            & Invoice.billing_account.is_in(sorted(scope.billing_account_ids) or [-1])
            & (Invoice.status != "draft")
        )
        .first()
    )
    if row is None:
        raise NotFound("invoice")
    row["lines"] = (
        await InvoiceLine.select()
        .where(InvoiceLine.invoice == invoice_id)
        .order_by(InvoiceLine.position)
    )
    row["payments"] = (
        await Allocation.select(
            Allocation.amount_minor,
            Allocation.payment.received_at.as_alias("received_at"),
            Allocation.payment.method.as_alias("method"),
            Allocation.payment.reference.as_alias("reference"),
        )
        .where(Allocation.invoice == invoice_id)
        .order_by(Allocation.id)
    )
    return row


@dataclass(frozen=True, slots=True)
class CurrencySummary:
    currency: str
    open_minor: int
    overdue_minor: int
    next_due: date | None
    open_count: int
    overdue_count: int


async def dashboard(scope: Scope, today: date) -> list[CurrencySummary]:
    """Open and overdue balances and the next due date, per currency."""
    base = Invoice.billing_account.is_in(sorted(scope.billing_account_ids) or [-1]) & (
        Invoice.status == "open"
    )
    open_rows = (
        await Invoice.select(
            Invoice.currency,
            Sum(Invoice.balance_minor).as_alias("balance"),
            Count(Invoice.id).as_alias("n"),
        )
        .where(base)
        .group_by(Invoice.currency)
    )
    overdue_rows = (
        await Invoice.select(
            Invoice.currency,
            Sum(Invoice.balance_minor).as_alias("balance"),
            Count(Invoice.id).as_alias("n"),
        )
        .where(base & (Invoice.due_date < today))
        .group_by(Invoice.currency)
    )
    next_rows = (
        await Invoice.select(Invoice.currency, Min(Invoice.due_date).as_alias("next_due"))
        .where(base & (Invoice.due_date >= today))
        .group_by(Invoice.currency)
    )
    overdue = {r["currency"]: r for r in overdue_rows}
    next_due = {r["currency"]: r["next_due"] for r in next_rows}
    result = []
    for r in sorted(open_rows, key=lambda r: r["currency"]):
        cur = r["currency"]
        nd = next_due.get(cur)
        if isinstance(nd, str):  # SQLite returns aggregates of dates as text
            nd = date.fromisoformat(nd)
        result.append(
            CurrencySummary(
                currency=cur,
                open_minor=int(r["balance"] or 0),
                overdue_minor=int(overdue.get(cur, {}).get("balance") or 0),
                next_due=nd,
                open_count=int(r["n"]),
                overdue_count=int(overdue.get(cur, {}).get("n") or 0),
            )
        )
    return result


async def organization_options(scope: Scope) -> list[dict[str, Any]]:
    """The nodes the user may filter by, in tree order."""
    return (
        await CustomerOrganization.select(
            CustomerOrganization.id, CustomerOrganization.name, CustomerOrganization.depth
        )
        .where(CustomerOrganization.id.is_in(sorted(scope.organization_ids) or [-1]))
        .order_by(CustomerOrganization.path)
    )


async def account_options(scope: Scope) -> list[dict[str, Any]]:
    return (
        await BillingAccount.select(BillingAccount.id, BillingAccount.name, BillingAccount.currency)
        .where(BillingAccount.id.is_in(sorted(scope.billing_account_ids) or [-1]))
        .order_by(BillingAccount.name)
    )
