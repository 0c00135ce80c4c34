"""``/invoices/{invoice_id}/credits``: the credit lines of a customer's invoice
(settlement adjustments with their tax, write-offs), through the customer's scope.

The invoice page loads it with htmx where an invoice's balance was reduced by
something other than payments; without JavaScript the link opens it as a page.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Template

from core.cash.adjustments import credit_lines
from core.identity.scope import Scope
from core.invoicing import queries
from portal.auth import current_session, provide_scope, requires_customer
from portal.customer.nav import nav_context


class CustomerCreditsController(Controller):
    path = "/invoices"
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    @get("/{invoice_id:int}/credits", name="invoice_credits", media_type=MediaType.HTML)
    async def credits(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        invoice_id: FromPath[int],
    ) -> Template:
        invoice = await queries.get_invoice(access, invoice_id)  # out of scope: 404
        context = {
            "inv": invoice,
            "credit_lines": await credit_lines(invoice_id),
            "user": await current_session(request),
            "nav": "invoices",
        }
        if request.headers.get("hx-request") == "true":
            return Template("cash/_credit_lines.html", context=context)
        context |= await nav_context(request, access)
        return Template("cash/credits.html", context=context)
