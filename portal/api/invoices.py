"""JSON API (v1), read side of invoices, scoped exactly like the customer pages."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from core.identity.scope import Scope
from core.invoicing import queries
from core.money import Money
from portal.auth import provide_scope, requires_customer
from portal.customer.filters import parse_invoice_filter
from portal.errors import problem


class InvoiceOut(msgspec.Struct):
    id: int
    number: str | None
    status: str
    currency: str
    issue_date: date | None
    due_date: date | None
    total: str
    balance: str
    billing_account: str
    organization: str


class InvoicePageOut(msgspec.Struct):
    items: list[InvoiceOut]
    total: int
    page: int
    pages: int
    per_page: int


def _amount(minor: int, currency_code: str) -> str:
    return str(Money.from_minor(minor, currency_code).amount)


def _out(r: dict[str, Any]) -> InvoiceOut:
    return InvoiceOut(
        id=r["id"],
        number=r["number"],
        status=r["status"],
        currency=r["currency"],
        issue_date=r["issue_date"],
        due_date=r["due_date"],
        total=_amount(r["total_minor"], r["currency"]),
        balance=_amount(r["balance_minor"], r["currency"]),
        billing_account=r["account_name"],
        organization=r["organization_name"],
    )


class InvoiceApiController(Controller):
    path = "/api/v1/invoices"
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}
    tags = ["invoices"]

    @get("/", summary="List invoices in the caller's scope")
    async def list_invoices(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Any:
        """Same filters as the invoice page: status, org, account, from, to, q, sort,
        page, per_page. Amounts are decimal strings in the invoice currency."""
        f, errors = parse_invoice_filter(request.query_params)
        if errors:
            return problem(400, "Some query parameters are invalid.", errors=errors)
        page = await queries.list_invoices(access, f, datetime.now(UTC).date())
        return InvoicePageOut(
            items=[_out(r) for r in page.rows],
            total=page.total,
            page=page.page,
            pages=page.pages,
            per_page=page.per_page,
        )

    @get("/{invoice_id:int}", summary="One invoice in the caller's scope")
    async def get_invoice(
        self, access: NamedDependency[Scope], invoice_id: FromPath[int]
    ) -> InvoiceOut:
        return _out(await queries.get_invoice(access, invoice_id))
