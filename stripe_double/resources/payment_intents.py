"""Payment intents: create (optionally confirming), confirm, retrieve, update, cancel, list."""

from __future__ import annotations

from typing import Any

from stripe_double import charging, ids, money
from stripe_double.asgi import Route
from stripe_double.errors import invalid, state_error
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.resources import payment_methods
from stripe_double.state import Ctx

CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
CREATE_PARAMS = (
    "amount",
    "currency",
    "customer",
    "payment_method",
    "confirm",
    "off_session",
    "metadata",
    "description",
    "receipt_email",
    "setup_future_usage",
    "capture_method",
    "confirmation_method",
    "return_url",
    "payment_method_types",
    "automatic_payment_methods",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "error_on_requires_action",
)


def new_intent(
    ctx: Ctx,
    *,
    amount: int,
    currency: str,
    customer: str | None = None,
    payment_method: str | None = None,
    description: str | None = None,
    meta: dict[str, str] | None = None,
    setup_future_usage: str | None = None,
    receipt_email: str | None = None,
) -> dict[str, Any]:
    pi = ctx.state.new(
        "pi",
        "payment_intent",
        amount=amount,
        amount_capturable=0,
        amount_received=0,
        automatic_payment_methods=None,
        canceled_at=None,
        cancellation_reason=None,
        capture_method="automatic",
        client_secret=None,
        confirmation_method="automatic",
        currency=currency,
        customer=customer,
        description=description,
        last_payment_error=None,
        latest_charge=None,
        metadata=meta or {},
        next_action=None,
        payment_method=payment_method,
        payment_method_types=["card"],
        receipt_email=receipt_email,
        setup_future_usage=setup_future_usage,
        statement_descriptor=None,
        status="requires_confirmation" if payment_method else "requires_payment_method",
    )
    pi["client_secret"] = ids.client_secret(pi["id"])
    ctx.state.emit("payment_intent.created", pi, ctx)
    return pi


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(CREATE_PARAMS)
    currency = money.currency_param(p.str("currency", required=True))
    amount = p.int("amount", required=True)
    assert amount is not None
    money.check_charge_amount(amount, currency)
    confirm = p.bool("confirm")
    off_session = p.bool("off_session")
    if off_session and not confirm:
        raise invalid(
            "You can only pass in off_session when confirm is set to true.", param="off_session"
        )
    p.enum("capture_method", ("automatic", "automatic_async"))
    p.enum("confirmation_method", ("automatic", "manual"))
    usage = p.enum("setup_future_usage", ("on_session", "off_session"))
    customer_id = p.str("customer")
    if customer_id:
        ctx.state.get("customer", customer_id, "customer")
    pm_value = p.str("payment_method")
    if pm_value and not payment_methods.is_usable(ctx, pm_value):
        ctx.state.get("payment_method", pm_value, "payment_method")
    return_url = p.str("return_url")
    if return_url and not confirm:
        raise invalid(
            "You can only pass in return_url when confirm is set to true.", param="return_url"
        )
    if confirm and not pm_value:
        raise invalid(
            "You cannot confirm this PaymentIntent because it's missing a payment method. To "
            "confirm the PaymentIntent with a payment method, pass `payment_method`.",
            param="payment_method",
            code="payment_intent_unexpected_state",
        )
    meta = metadata(p.raw("metadata"))
    pm = payment_methods.resolve(ctx, pm_value) if pm_value else None
    if pm is not None:
        _check_owner(pm, customer_id)
    pi = new_intent(
        ctx,
        amount=amount,
        currency=currency,
        customer=customer_id,
        payment_method=pm["id"] if pm else None,
        description=p.str("description"),
        meta=meta,
        setup_future_usage=usage,
        receipt_email=p.str("receipt_email"),
    )
    if return_url:
        ctx.state.meta[pi["id"]]["return_url"] = return_url
    if confirm and charging.pay(ctx, pi, off_session=off_session) == "declined":
        raise charging.decline_error(pi)
    return pi


def confirm(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    pi = ctx.state.get("payment_intent", id)
    p.only(
        (
            "payment_method",
            "return_url",
            "off_session",
            "setup_future_usage",
            "receipt_email",
            "payment_method_types",
            "error_on_requires_action",
            "client_secret",
        )
    )
    off_session = p.bool("off_session")
    usage = p.enum("setup_future_usage", ("on_session", "off_session"))
    pm_value = p.str("payment_method")
    if pm_value and not payment_methods.is_usable(ctx, pm_value):
        ctx.state.get("payment_method", pm_value, "payment_method")
    if pi["status"] not in CONFIRMABLE:
        raise state_error(
            f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
            code="payment_intent_unexpected_state",
        )
    if pm_value:
        pm = payment_methods.resolve(ctx, pm_value)
        _check_owner(pm, pi["customer"])
        pi["payment_method"] = pm["id"]
    if pi["payment_method"] is None:
        raise _missing_payment_method(pi)
    if usage:
        pi["setup_future_usage"] = usage
    if p.str("receipt_email"):
        pi["receipt_email"] = p.str("receipt_email")
    if p.str("return_url"):
        ctx.state.meta[pi["id"]]["return_url"] = p.str("return_url")
    if charging.pay(ctx, pi, off_session=off_session) == "declined":
        raise charging.decline_error(pi)
    return pi


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only(("client_secret",))
    return ctx.state.get("payment_intent", id)


def update(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    pi = ctx.state.get("payment_intent", id)
    p.only(
        (
            "amount",
            "currency",
            "customer",
            "description",
            "metadata",
            "payment_method",
            "receipt_email",
            "setup_future_usage",
        )
    )
    changes: dict[str, Any] = {}
    money_fields = ("amount", "currency", "customer", "payment_method", "setup_future_usage")
    if pi["status"] in ("succeeded", "canceled") and any(f in p for f in money_fields):
        raise state_error(
            f"This PaymentIntent's {next(f for f in money_fields if f in p)} could not be "
            f"updated because it has a status of {pi['status']}. You may only update the "
            f"{next(f for f in money_fields if f in p)} of a PaymentIntent with one of the "
            "following statuses: requires_payment_method, requires_confirmation, "
            "requires_action.",
            code="payment_intent_unexpected_state",
        )
    currency = money.currency_param(p.str("currency")) if "currency" in p else pi["currency"]
    if "amount" in p or "currency" in p:
        amount = p.int("amount") if "amount" in p else pi["amount"]
        assert amount is not None
        money.check_charge_amount(amount, currency)
        changes.update(amount=amount, currency=currency)
    if "customer" in p:
        changes["customer"] = ctx.state.get("customer", p.str("customer"), "customer")["id"]
    if "description" in p:
        changes["description"] = p.str("description") or None
    if "receipt_email" in p:
        changes["receipt_email"] = p.str("receipt_email") or None
    if "setup_future_usage" in p:
        changes["setup_future_usage"] = p.enum("setup_future_usage", ("on_session", "off_session"))
    if "metadata" in p:
        changes["metadata"] = metadata(p.raw("metadata"), pi["metadata"])
    if "payment_method" in p:
        pm = payment_methods.resolve(ctx, p.str("payment_method"))
        changes["payment_method"] = pm["id"]
        changes["status"] = "requires_confirmation"
        changes["next_action"] = None
    previous = {k: pi[k] for k, v in changes.items() if pi[k] != v}
    pi.update(changes)
    if previous:
        ctx.state.emit("payment_intent.updated", pi, ctx, previous)
    return pi


def cancel(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    pi = ctx.state.get("payment_intent", id)
    p.only(("cancellation_reason",))
    reason = p.enum("cancellation_reason", CANCEL_REASONS)
    if pi["status"] not in CANCELABLE:
        raise state_error(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
            "Only a PaymentIntent with one of the following statuses may be canceled: "
            + ", ".join(CANCELABLE)
            + ".",
            code="payment_intent_unexpected_state",
        )
    pi.update(
        status="canceled",
        canceled_at=ctx.state.ts(),
        cancellation_reason=reason,
        next_action=None,
    )
    ctx.state.emit("payment_intent.canceled", pi, ctx)
    return pi


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "customer"))
    customer = p.str("customer")
    items = [i for i in ctx.state.all("payment_intent") if customer in (None, i["customer"])]
    return paginate(items, p, "/v1/payment_intents")


def _check_owner(pm: dict[str, Any], customer_id: str | None) -> None:
    if pm["customer"] is not None and pm["customer"] != customer_id:
        raise invalid(
            f"The provided PaymentMethod ({pm['id']}) belongs to customer {pm['customer']}; "
            "pass that customer to use it.",
            param="payment_method",
        )


def _missing_payment_method(pi: dict[str, Any]) -> Exception:
    return state_error(
        "You cannot confirm this PaymentIntent because it's missing a payment method. To "
        "confirm the PaymentIntent with a payment method, pass `payment_method`.",
        code="payment_intent_unexpected_state",
    )


ROUTES = [
    Route("POST", "/v1/payment_intents", create),
    Route("GET", "/v1/payment_intents", list_),
    Route("GET", "/v1/payment_intents/{id}", retrieve),
    Route("POST", "/v1/payment_intents/{id}", update),
    Route("POST", "/v1/payment_intents/{id}/confirm", confirm),
    Route("POST", "/v1/payment_intents/{id}/cancel", cancel),
]
