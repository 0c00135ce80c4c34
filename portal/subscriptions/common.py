"""What the customer and staff subscription pages share: form parsing, the preview and
confirm flow, and the template context. Handlers stay thin; core.billing.subscriptions
does the work."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any

from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from core.audit.log import Actor
from core.billing import subscriptions as subs
from core.billing.periods import as_timezone
from core.billing.subscriptions import Request
from core.errors import Conflict, ValidationFailed

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
PREVIEW_TARGET = "preview"
NOTICES = {
    "change": "Done: the plan change is applied. Its proration is billed on the next invoice.",
    "change_price": "Done: the plan change is applied. Its proration is billed on the next "
    "invoice.",
    "change_quantity": "Done: the quantity change is applied. Its proration is billed on the "
    "next invoice.",
    "cancel_now": "The subscription is canceled. The unused time is credited on the next invoice.",
    "cancel_at_period_end": "The subscription will end when the current period ends.",
    "reactivate": "The subscription is active again.",
    "restart": "The subscription is active again, from today.",
    "created": "Subscription created.",
}


def local(value: datetime | None, tz: str | None, *, time: bool = False) -> str:
    """A UTC instant as the account sees it: ``22 Nov 2026`` (``, 14:05`` with ``time``)."""
    if value is None:
        return "—"
    shown = value.astimezone(as_timezone(tz or "UTC"))
    return shown.strftime("%d %b %Y, %H:%M" if time else "%d %b %Y")


def clip(data: dict[str, Any], name: str, limit: int = 64) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def parse_request(data: dict[str, Any]) -> Request:
    """An action and, for a change, the price and quantity (``ValidationFailed`` if bad)."""
    action = clip(data, "action")
    if action not in subs.ACTIONS:
        raise ValidationFailed({"action": "Choose what to do"})
    if action != "change":
        return Request(action)
    errors: dict[str, str] = {}
    price_text = clip(data, "price")
    price_id = int(price_text) if price_text.isdigit() and len(price_text) < 10 else None
    if price_id is None:
        errors["price"] = "Choose a plan"
    try:
        quantity = subs.parse_quantity(clip(data, "quantity"))
    except ValidationFailed as exc:
        errors |= exc.errors
        quantity = None
    if errors:
        raise ValidationFailed(errors)
    return Request(action, price_id, quantity)


async def detail_context(
    subscription_id: int, account_ids: Collection[int] | None, base: str
) -> dict[str, Any]:
    sub = await subs.get_subscription(subscription_id, account_ids)
    return {
        "sub": sub,
        "base": base,
        "plans": await subs.plan_options(sub),
        "changes": await subs.history(subscription_id),
        "pending": await subs.pending_charges(subscription_id),
        "form": {"price": str(sub["price"]), "quantity": f"{sub['quantity'].normalize():f}"},
        "errors": {},
        "shown": None,
        "local": local,
    }


async def preview_response(
    request: HTMXRequest,
    subscription_id: int,
    account_ids: Collection[int] | None,
    base: str,
    page: dict[str, Any],
) -> Template:
    """The preview: a fragment for htmx, else the detail page with the preview in it."""
    data = dict(request.query_params)
    fragment = bool(request.htmx) and request.htmx.target == PREVIEW_TARGET
    context: dict[str, Any] = {
        "base": base,
        "errors": {},
        "shown": None,
        "conflict": None,
        "local": local,
    }
    status = 200
    try:
        context["shown"] = await subs.preview(
            subscription_id, parse_request(data), account_ids=account_ids
        )
    except ValidationFailed as exc:
        context["errors"], status = exc.errors, 422
    except Conflict as exc:
        context["conflict"], status = str(exc), 409
    if not fragment:
        context = {**await detail_context(subscription_id, account_ids, base), **page, **context}
        context["form"] = {
            "price": clip(data, "price") or context["form"]["price"],
            "quantity": clip(data, "quantity") or context["form"]["quantity"],
        }
        template = "subscriptions/detail.html"
    else:
        context["sub"] = await subs.get_subscription(subscription_id, account_ids)
        template = "subscriptions/_preview.html"
    # A 4xx would stop htmx from swapping: the fragment carries the message with 200.
    return Template(
        template,
        context=context,
        status_code=200 if fragment else status,
        headers={"Vary": "HX-Request, HX-Target"},
    )


async def confirm(
    subscription_id: int,
    data: dict[str, Any],
    account_ids: Collection[int] | None,
    actor: Actor,
) -> subs.ChangeResult:
    req = parse_request(data)
    version_text = clip(data, "version")
    if not version_text.isdigit() or len(version_text) > 9:
        raise ValidationFailed({"version": "The preview is missing or damaged: preview again"})
    billed = {"1": True, "0": False}.get(clip(data, "billed"))
    return await subs.confirm(
        subscription_id,
        req,
        expected_version=int(version_text),
        expected_billed=billed,
        at=subs.parse_at(clip(data, "at")),
        actor=actor,
        account_ids=account_ids,
    )
