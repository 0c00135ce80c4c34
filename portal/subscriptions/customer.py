"""Customer subscription pages (``/subscriptions``).

Everyone sees the subscriptions of the billing accounts in their scope (others: 404).
Changing a plan or quantity, canceling and reactivating need the **approver** role (or
admin) on the subscription's billing account (``CHANGE_ROLE``): viewers and payers see
only. Every change is previewed first (htmx fragment, or a full page without
JavaScript) and confirmed with the preview's version and instant.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from core.billing import subscriptions as subs
from core.errors import Conflict, ValidationFailed
from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from portal.auth import (
    actor_for,
    current_session,
    provide_scope,
    requires_customer,
    requires_customer_action,
)
from portal.customer.nav import nav_context
from portal.subscriptions import common
from portal.subscriptions.common import Form

CHANGE_ROLE = CustomerRole.APPROVER
BASE = "/subscriptions"


async def _page(request: Request[Any, Any, Any], access: Scope) -> dict[str, Any]:
    return {
        "user": await current_session(request),
        "nav": "subscriptions",
        "staff": False,
        **await nav_context(request, access),
    }


async def _may_change(access: Scope, subscription_id: int) -> bool:
    sub = await subs.get_subscription(subscription_id, access.billing_account_ids)  # 404
    return access.may(CHANGE_ROLE, sub["billing_account"])


async def _require_change(access: Scope, subscription_id: int) -> None:
    if not await _may_change(access, subscription_id):
        raise PermissionDeniedException(
            "Changing a subscription needs the approver or administrator role."
        )


class CustomerSubscriptionController(Controller):
    path = BASE
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    @get("/", name="subscriptions", media_type=MediaType.HTML)
    async def index(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        rows = await subs.list_subscriptions(access.billing_account_ids)
        return Template(
            "subscriptions/list.html",
            context={
                **await _page(request, access),
                "rows": rows,
                "base": BASE,
                "local": common.local,
            },
        )

    @get("/{subscription_id:int}", name="subscription_detail", media_type=MediaType.HTML)
    async def detail(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        subscription_id: FromPath[int],
    ) -> Template:
        context = await common.detail_context(subscription_id, access.billing_account_ids, BASE)
        notice = request.query_params.get("notice", "")
        return Template(
            "subscriptions/detail.html",
            context={
                **context,
                **await _page(request, access),
                "may_change": access.may(CHANGE_ROLE, context["sub"]["billing_account"]),
                "notice": common.NOTICES.get(notice),
            },
        )

    @get("/{subscription_id:int}/preview", media_type=MediaType.HTML)
    async def preview(
        self, request: HTMXRequest, access: NamedDependency[Scope], subscription_id: FromPath[int]
    ) -> Template:
        await _require_change(access, subscription_id)
        page = {**await _page(request, access), "may_change": True}
        return await common.preview_response(
            request, subscription_id, access.billing_account_ids, BASE, page
        )

    @post(
        "/{subscription_id:int}/confirm",
        guards=[requires_customer_action],
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        subscription_id: FromPath[int],
        data: Form,
    ) -> Any:
        await _require_change(access, subscription_id)
        try:
            done = await common.confirm(
                subscription_id, data, access.billing_account_ids, actor_for(request)
            )
        except (ValidationFailed, Conflict) as exc:
            context = await common.detail_context(subscription_id, access.billing_account_ids, BASE)
            conflict = isinstance(exc, Conflict)
            return Template(
                "subscriptions/detail.html",
                context={
                    **context,
                    **await _page(request, access),
                    "may_change": True,
                    "conflict": str(exc) if conflict else None,
                    "errors": {} if conflict else exc.errors,  # type: ignore[union-attr]
                },
                status_code=409 if conflict else 422,
            )
        return Redirect(f"{BASE}/{subscription_id}?notice={done.preview.kind}", status_code=303)
