"""Staff subscription and catalog pages (``/staff/subscriptions``, ``/staff/catalog``).

Every staff user can read them. Creating and changing subscriptions, and editing the
catalog, need the billing_ops or finance_admin role (``EDITOR_ROLES``); an auditor (and
any other role) is read-only and gets 403 on every change.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, MediaType, Request, get, post
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from core.billing import subscriptions as subs
from core.catalog import price_book
from core.catalog import services as catalog
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.roles import StaffRole
from core.identity.security import staff_role
from core.identity.tables import BillingAccount
from portal.auth import actor_for, current_session, requires_staff
from portal.staff.roles import requires_staff_role
from portal.subscriptions import common
from portal.subscriptions.common import Form, clip

EDITOR_ROLES = frozenset({StaffRole.BILLING_OPS.value, StaffRole.FINANCE_ADMIN.value})
requires_editor = requires_staff_role(
    EDITOR_ROLES, "Only billing operations and finance admins may do this."
)
BASE = "/staff/subscriptions"


async def _page(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = await current_session(request)
    assert session is not None  # requires_staff
    return {
        "user": session,
        "nav": "staff",
        "staff": True,
        "may_change": await staff_role(session.user_id) in EDITOR_ROLES,
    }


async def _accounts() -> list[dict[str, Any]]:
    return await BillingAccount.select(
        BillingAccount.id, BillingAccount.code, BillingAccount.name, BillingAccount.currency
    ).order_by(BillingAccount.code)


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 10 else None


class StaffSubscriptionController(Controller):
    path = BASE
    guards = [requires_staff]

    @get("/", name="staff_subscriptions", media_type=MediaType.HTML)
    async def index(self, request: Request[Any, Any, Any]) -> Template:
        return Template(
            "subscriptions/list.html",
            context={
                **await _page(request),
                "rows": await subs.list_subscriptions(),
                "base": BASE,
                "local": common.local,
            },
        )

    async def _new_page(
        self, request: Request[Any, Any, Any], form: dict[str, str], errors: dict[str, str]
    ) -> Template:
        return Template(
            "subscriptions/staff_new.html",
            context={
                **await _page(request),
                "accounts": await _accounts(),
                "prices": await catalog.list_prices(active_only=True),
                "discounts": await catalog.list_discounts(),
                "form": form,
                "errors": errors,
            },
            status_code=422 if errors else 200,
        )

    @get("/new", media_type=MediaType.HTML, guards=[requires_editor])
    async def new(self, request: Request[Any, Any, Any]) -> Template:
        return await self._new_page(request, {"quantity": "1"}, {})

    @post("/", media_type=MediaType.HTML, status_code=303, guards=[requires_editor])
    async def create(self, request: Request[Any, Any, Any], data: Form) -> Any:
        names = ("account", "price", "quantity", "start_date", "anchor_day", "trial_days")
        form = {k: clip(data, k) for k in (*names, "discount")}
        errors: dict[str, str] = {}
        account, price = _int(form["account"]), _int(form["price"])
        if account is None:
            errors["account"] = "Choose a billing account"
        if price is None:
            errors["price"] = "Choose a plan"
        try:
            quantity = subs.parse_quantity(form["quantity"])
        except ValidationFailed as exc:
            errors |= exc.errors
        start = None
        if form["start_date"]:
            try:
                start = date.fromisoformat(form["start_date"])
            except ValueError:
                errors["start_date"] = "Enter a date like 2026-12-01"
        anchor = _int(form["anchor_day"]) if form["anchor_day"] else None
        if form["anchor_day"] and anchor is None:
            errors["anchor_day"] = "Choose a day between 1 and 31"
        trial = _int(form["trial_days"]) if form["trial_days"] else None
        if form["trial_days"] and trial is None:
            errors["trial_days"] = "Enter 0 to 730 days"
        discount = _int(form["discount"]) if form["discount"] else None
        if errors:
            return await self._new_page(request, form, errors)
        assert account is not None
        assert price is not None
        try:
            sub_id = await subs.create(
                account,
                price,
                quantity,
                actor_for(request),
                start_date=start,
                anchor_day=anchor,
                trial_days=trial,
                discount_id=discount,
            )
        except ValidationFailed as exc:
            return await self._new_page(request, form, exc.errors)
        except NotFound:
            return await self._new_page(request, form, {"account": "Choose a billing account"})
        return Redirect(f"{BASE}/{sub_id}?notice=created", status_code=303)

    @get("/{subscription_id:int}", media_type=MediaType.HTML)
    async def detail(
        self, request: Request[Any, Any, Any], subscription_id: FromPath[int]
    ) -> Template:
        context = await common.detail_context(subscription_id, None, BASE)
        notice = request.query_params.get("notice", "")
        return Template(
            "subscriptions/detail.html",
            context={**context, **await _page(request), "notice": common.NOTICES.get(notice)},
        )

    @get("/{subscription_id:int}/preview", media_type=MediaType.HTML, guards=[requires_editor])
    async def preview(self, request: HTMXRequest, subscription_id: FromPath[int]) -> Template:
        return await common.preview_response(
            request, subscription_id, None, BASE, await _page(request)
        )

    @post(
        "/{subscription_id:int}/confirm",
        media_type=MediaType.HTML,
        status_code=303,
        guards=[requires_editor],
    )
    async def confirm(
        self, request: Request[Any, Any, Any], subscription_id: FromPath[int], data: Form
    ) -> Any:
        try:
            done = await common.confirm(subscription_id, data, None, actor_for(request))
        except (ValidationFailed, Conflict) as exc:
            conflict = isinstance(exc, Conflict)
            context = await common.detail_context(subscription_id, None, BASE)
            return Template(
                "subscriptions/detail.html",
                context={
                    **context,
                    **await _page(request),
                    "conflict": str(exc) if conflict else None,
                    "errors": {} if conflict else exc.errors,  # type: ignore[union-attr]
                },
                status_code=409 if conflict else 422,
            )
        return Redirect(f"{BASE}/{subscription_id}?notice={done.preview.kind}", status_code=303)


class StaffCatalogController(Controller):
    path = "/staff/catalog"
    guards = [requires_staff]

    async def _render(
        self,
        request: Request[Any, Any, Any],
        *,
        errors: dict[str, dict[str, str]] | None = None,
        forms: dict[str, dict[str, str]] | None = None,
        notice: str = "",
    ) -> Template:
        return Template(
            "subscriptions/catalog.html",
            context={
                **await _page(request),
                "products": await catalog.list_products(),
                "prices": await catalog.list_prices(),
                "discounts": await catalog.list_discounts(),
                "models": price_book.MODEL_LABELS,
                "roundings": list(price_book.ROUNDING_NAMES),
                "errors": errors or {},
                "forms": forms or {},
                "notice": notice,
            },
            status_code=422 if errors else 200,
        )

    @get("/", name="staff_catalog", media_type=MediaType.HTML)
    async def index(self, request: Request[Any, Any, Any]) -> Template:
        notices = {
            "product": "Product created.",
            "price": "Price created.",
            "discount": "Discount created.",
            "price_state": "Price updated.",
        }
        return await self._render(
            request, notice=notices.get(request.query_params.get("notice", ""), "")
        )

    @post("/products", media_type=MediaType.HTML, status_code=303, guards=[requires_editor])
    async def create_product(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: clip(data, k, 2000) for k in ("code", "name", "description")}
        try:
            await catalog.create_product(form, actor_for(request))
        except ValidationFailed as exc:
            return await self._render(
                request, errors={"product": exc.errors}, forms={"product": form}
            )
        return Redirect("/staff/catalog?notice=product#products-h", status_code=303)

    @post("/prices", media_type=MediaType.HTML, status_code=303, guards=[requires_editor])
    async def create_price(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: clip(data, k, 2000) for k in data}
        product = _int(form.get("product", ""))
        try:
            if product is None:
                raise ValidationFailed({"product": "Choose a product"})
            await catalog.create_price(product, form, actor_for(request))
        except ValidationFailed as exc:
            return await self._render(request, errors={"price": exc.errors}, forms={"price": form})
        except NotFound:
            errors = {"price": {"product": "Choose a product"}}
            return await self._render(request, errors=errors, forms={"price": form})
        return Redirect("/staff/catalog?notice=price#prices-h", status_code=303)

    @post(
        "/prices/{price_id:int}/active",
        media_type=MediaType.HTML,
        status_code=303,
        guards=[requires_editor],
    )
    async def set_active(
        self, request: Request[Any, Any, Any], price_id: FromPath[int], data: Form
    ) -> Redirect:
        await catalog.set_price_active(price_id, clip(data, "active") == "1", actor_for(request))
        return Redirect("/staff/catalog?notice=price_state#prices-h", status_code=303)

    @post("/discounts", media_type=MediaType.HTML, status_code=303, guards=[requires_editor])
    async def create_discount(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: clip(data, k, 200) for k in data}
        try:
            await catalog.create_discount(form, actor_for(request))
        except ValidationFailed as exc:
            return await self._render(
                request, errors={"discount": exc.errors}, forms={"discount": form}
            )
        return Redirect("/staff/catalog?notice=discount#discounts-h", status_code=303)
