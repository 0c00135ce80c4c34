"""Setup intents: save a card for later (off-session) payments."""

from __future__ import annotations

from typing import Any

from stripe_double import charging, ids
from stripe_double.asgi import Route
from stripe_double.errors import invalid, missing_param, state_error
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.resources import payment_methods
from stripe_double.state import Ctx

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


def new_intent(
    ctx: Ctx,
    *,
    customer: str | None,
    payment_method: str | None,
    usage: str = "off_session",
    description: str | None = None,
    meta: dict[str, str] | None = None,
) -> dict[str, Any]:
    si = ctx.state.new(
        "seti",
        "setup_intent",
        application=None,
        cancellation_reason=None,
        client_secret=None,
        customer=customer,
        description=description,
        last_setup_error=None,
        latest_attempt=None,
        metadata=meta or {},
        next_action=None,
        payment_method=payment_method,
        payment_method_types=["card"],
        status="requires_confirmation" if payment_method else "requires_payment_method",
        usage=usage,
    )
    si["client_secret"] = ids.client_secret(si["id"])
    ctx.state.emit("setup_intent.created", si, ctx)
    return si


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(
        (
            "customer",
            "payment_method",
            "confirm",
            "usage",
            "metadata",
            "description",
            "return_url",
            "payment_method_types",
            "automatic_payment_methods",
        )
    )
    usage = p.enum("usage", ("on_session", "off_session"), default="off_session")
    customer_id = p.str("customer")
    if customer_id:
        ctx.state.get("customer", customer_id, "customer")
    confirm = p.bool("confirm")
    pm_value = p.str("payment_method")
    if pm_value and not payment_methods.is_usable(ctx, pm_value):
        ctx.state.get("payment_method", pm_value, "payment_method")
    if confirm and not pm_value:
        raise missing_param("payment_method")
    meta = metadata(p.raw("metadata"))
    pm = payment_methods.resolve(ctx, pm_value) if pm_value else None
    if pm is not None and pm["customer"] not in (None, customer_id):
        raise invalid("The provided PaymentMethod belongs to another customer.", param="customer")
    si = new_intent(
        ctx,
        customer=customer_id,
        payment_method=pm["id"] if pm else None,
        usage=usage or "off_session",
        description=p.str("description"),
        meta=meta,
    )
    if p.str("return_url"):
        ctx.state.meta[si["id"]]["return_url"] = p.str("return_url")
    if confirm and charging.setup(ctx, si) == "declined":
        raise charging.setup_error(si)
    return si


def confirm(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    si = ctx.state.get("setup_intent", id)
    p.only(("payment_method", "return_url", "client_secret", "payment_method_types"))
    pm_value = p.str("payment_method")
    if pm_value and not payment_methods.is_usable(ctx, pm_value):
        ctx.state.get("payment_method", pm_value, "payment_method")
    if si["status"] not in CONFIRMABLE:
        raise state_error(
            f"You cannot confirm this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    if pm_value:
        si["payment_method"] = payment_methods.resolve(ctx, pm_value)["id"]
    if si["payment_method"] is None:
        raise state_error(
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            code="setup_intent_unexpected_state",
        )
    if p.str("return_url"):
        ctx.state.meta[si["id"]]["return_url"] = p.str("return_url")
    if charging.setup(ctx, si) == "declined":
        raise charging.setup_error(si)
    return si


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only(("client_secret",))
    return ctx.state.get("setup_intent", id)


def cancel(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    si = ctx.state.get("setup_intent", id)
    p.only(("cancellation_reason",))
    reason = p.enum("cancellation_reason", ("abandoned", "duplicate", "requested_by_customer"))
    if si["status"] not in CANCELABLE:
        raise state_error(
            f"You cannot cancel this SetupIntent because it has a status of {si['status']}.",
            code="setup_intent_unexpected_state",
        )
    si.update(status="canceled", cancellation_reason=reason, next_action=None)
    ctx.state.emit("setup_intent.canceled", si, ctx)
    return si


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "customer", "payment_method"))
    customer, pm = p.str("customer"), p.str("payment_method")
    items = [
        si
        for si in ctx.state.all("setup_intent")
        if customer in (None, si["customer"]) and pm in (None, si["payment_method"])
    ]
    return paginate(items, p, "/v1/setup_intents")


ROUTES = [
    Route("POST", "/v1/setup_intents", create),
    Route("GET", "/v1/setup_intents", list_),
    Route("GET", "/v1/setup_intents/{id}", retrieve),
    Route("POST", "/v1/setup_intents/{id}/confirm", confirm),
    Route("POST", "/v1/setup_intents/{id}/cancel", cancel),
]
