"""Customer usage page (``/usage``): current-period usage per metric and projected
charges of the subscriptions in the user's scope. ``?account=ID`` narrows to one billing
account; an account outside the scope is a 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Controller, MediaType, Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.response import Template

from core.billing.usage_queries import usage_overview
from core.identity.scope import Scope
from portal.auth import current_session, provide_scope, requires_customer
from portal.customer.nav import nav_context


class CustomerUsageController(Controller):
    path = "/usage"
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    @get("/", name="usage", media_type=MediaType.HTML)
    async def index(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        wanted = request.query_params.get("account", "")
        accounts = sorted(access.billing_account_ids)
        if wanted:
            if not wanted.isdigit() or len(wanted) > 9 or int(wanted) not in accounts:
                raise NotFoundException()
            accounts = [int(wanted)]
        now = datetime.now(UTC)
        lines = await usage_overview(accounts, now)
        totals: dict[str, list[int]] = {}
        for line in lines:
            so_far, projected = totals.setdefault(line.currency, [0, 0])
            totals[line.currency] = [
                so_far + line.charge_so_far_minor,
                projected + line.projected_minor,
            ]
        return Template(
            "billing_runs/usage.html",
            context={
                "user": await current_session(request),
                "nav": "usage",
                **await nav_context(request, access),
                "lines": lines,
                "totals": totals,
                "now": now,
                "one_second": timedelta(seconds=1),
            },
        )
