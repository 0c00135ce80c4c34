"""Customer pages: dashboard, invoice list (full page or htmx fragment), export, detail
(with its Pay button rendered server-side for payers)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from core.audit.log import AuditRecord, record
from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from core.invoicing import queries
from core.money import Money
from core.payments.queries import payable_invoices
from portal.auth import actor_for, current_session, provide_scope, requires_customer
from portal.customer.filters import filter_query, parse_invoice_filter
from portal.customer.nav import nav_context

RESULTS_TARGET = "invoice-results"


def today() -> Any:
    return datetime.now(UTC).date()


async def may_pay_now(access: Scope, invoice: dict[str, Any]) -> bool:
    """Whether the invoice page shows "Pay this invoice": the invoice is open, the user
    is at least a payer of its billing account, and some of its balance is not already
    being collected by another attempt. No query for viewers or closed invoices."""
    if invoice["status"] != "open" or not access.may(
        CustomerRole.PAYER, invoice["billing_account_id"]
    ):
        return False
    rows = await payable_invoices(access, [invoice["id"]])
    return bool(rows) and rows[0]["available_minor"] > 0


class CustomerController(Controller):
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    @get("/", name="dashboard")
    async def dashboard(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        summary = await queries.dashboard(access, today())
        return Template(
            "customer/dashboard.html",
            context={
                "user": await current_session(request),
                "nav": "dashboard",
                "summary": summary,
                "today": today(),
                **await nav_context(request, access),
            },
        )

    @get("/invoices", name="invoices")
    async def invoices(self, request: HTMXRequest, access: NamedDependency[Scope]) -> Template:
        f, errors = parse_invoice_filter(request.query_params)
        page = await queries.list_invoices(access, f, today())
        fragment = bool(request.htmx) and request.htmx.target == RESULTS_TARGET
        context: dict[str, Any] = {
            "user": await current_session(request),
            "nav": "invoices",
            "f": f,
            "errors": errors,
            "page": page,
            "today": today(),
            "query": lambda **changes: filter_query(f, **changes),
            "fragment": fragment,
        }
        if not fragment:  # the filter form's choices are only rendered on the full page
            context |= {
                "organizations": await queries.organization_options(access),
                "accounts": await queries.account_options(access),
                "statuses": queries.STATUS_FILTERS,
                "per_page_choices": queries.PER_PAGE_CHOICES,
                **await nav_context(request, access),
            }
        template = "customer/_invoice_results.html" if fragment else "customer/invoices.html"
        return Template(template, context=context, headers={"Vary": "HX-Request, HX-Target"})

    @get("/invoices/export.csv", name="invoices_export")
    async def export(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Response[str]:
        f, _ = parse_invoice_filter(request.query_params)
        rows = await queries.export_rows(access, f, today())
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "number",
                "status",
                "organization",
                "billing_account",
                "issue_date",
                "due_date",
                "currency",
                "total",
                "balance",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r["number"],
                    r["status"],
                    r["organization_name"],
                    r["account_name"],
                    r["issue_date"],
                    r["due_date"],
                    r["currency"],
                    Money.from_minor(r["total_minor"], r["currency"]).amount,
                    Money.from_minor(r["balance_minor"], r["currency"]).amount,
                ]
            )
        await record(
            AuditRecord(
                actor_for(request),
                "invoices.exported",
                "invoice_list",
                data={"rows": len(rows), "filter": filter_query(f)},
            )
        )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="invoices.csv"'},
        )

    @get("/invoices/{invoice_id:int}", name="invoice_detail")
    async def invoice_detail(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        invoice_id: FromPath[int],
    ) -> Template:
        invoice = await queries.get_invoice(access, invoice_id)
        return Template(
            "customer/invoice_detail.html",
            context={
                "user": await current_session(request),
                "nav": "invoices",
                "inv": invoice,
                "today": today(),
                "pay_invoice": await may_pay_now(access, invoice),
                **await nav_context(request, access),
            },
        )
