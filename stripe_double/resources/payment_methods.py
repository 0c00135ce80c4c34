"""Payment methods (cards only): create from a test number or token, attach, detach, list."""

from __future__ import annotations

import hashlib
from typing import Any

from stripe_double import cards
from stripe_double.asgi import Route
from stripe_double.errors import invalid, missing_param, state_error
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.state import Ctx

BILLING = ("address", "email", "name", "phone")
CARD = ("number", "exp_month", "exp_year", "cvc", "token")


def build(
    ctx: Ctx,
    card: cards.CardSpec,
    *,
    exp_month: int = 12,
    exp_year: int | None = None,
    billing: dict[str, Any] | None = None,
    meta: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A new card payment method for a test card."""
    year = exp_year or _this_year(ctx) + 3
    pm = ctx.state.new(
        "pm",
        "payment_method",
        allow_redisplay="unspecified",
        billing_details={
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
            **(billing or {}),
        },
        card={
            "brand": card.brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": card.country,
            "display_brand": card.brand,
            "exp_month": exp_month,
            "exp_year": year,
            "fingerprint": hashlib.sha256(card.number.encode()).hexdigest()[:16],
            "funding": card.funding,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        customer=None,
        metadata=meta or {},
        type="card",
    )
    ctx.state.meta[pm["id"]]["card"] = card
    return pm


def card_of(ctx: Ctx, pm: dict[str, Any]) -> cards.CardSpec:
    return ctx.state.meta[pm["id"]]["card"]


def resolve(ctx: Ctx, value: str | None, param: str = "payment_method") -> dict[str, Any]:
    """An existing payment method, or a fresh one for a test token (``pm_card_visa``)."""
    if not value:
        raise missing_param(param)
    card = cards.from_token(value)
    if card is not None:
        return build(ctx, card)
    return ctx.state.get("payment_method", value, param)


def is_usable(ctx: Ctx, value: str) -> bool:
    """A test token or the id of an existing payment method."""
    found = ctx.state.find(value)
    return cards.is_token(value) or (found is not None and found["object"] == "payment_method")


def attach_to(ctx: Ctx, value: str | None, customer: dict[str, Any]) -> dict[str, Any]:
    pm = resolve(ctx, value)
    if pm["customer"] == customer["id"]:
        return pm
    if pm["customer"] is not None:
        raise state_error(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    card = card_of(ctx, pm)
    if card.behaviour == cards.DECLINE and card.decline is not None:
        raise cards.card_error(
            card.decline.code,
            card.decline.message,
            decline_code=card.decline.decline_code,
            param=card.decline.param,
        )
    pm["customer"] = customer["id"]
    ctx.state.emit("payment_method.attached", pm, ctx)
    return pm


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(("type", "card", "billing_details", "metadata", "payment_method", "customer"))
    kind = p.enum("type", ("card",), default="card" if "payment_method" in p else None)
    if kind is None:
        raise missing_param("type")
    token = p.str("payment_method")
    meta = metadata(p.raw("metadata"))
    billing = _billing(p)
    if token:
        card = cards.from_token(token)
        if card is None:
            raise invalid(f"No such PaymentMethod: '{token}'", param="payment_method")
        return build(ctx, card, billing=billing, meta=meta)
    card_p = p.sub("card", CARD)
    if "token" in card_p:
        card = cards.from_token(card_p.str("token") or "")
        if card is None:
            raise invalid(f"No such token: '{card_p.str('token')}'", param="card[token]")
        return build(ctx, card, billing=billing, meta=meta)
    number = card_p.str("number")
    if not number:
        raise missing_param("card[number]")
    exp_month = card_p.int("exp_month")
    exp_year = card_p.int("exp_year")
    if exp_month is None:
        raise missing_param("card[exp_month]")
    if exp_year is None:
        raise missing_param("card[exp_year]")
    check_expiry(ctx, exp_month, exp_year)
    card = cards.from_number(number)
    return build(
        ctx, card, exp_month=exp_month, exp_year=_full_year(exp_year), billing=billing, meta=meta
    )


def check_expiry(ctx: Ctx, exp_month: int, exp_year: int) -> None:
    if not 1 <= exp_month <= 12:
        raise cards.card_error(
            "invalid_expiry_month",
            "Your card's expiration month is invalid.",
            param="exp_month",
        )
    year = _full_year(exp_year)
    this_year = _this_year(ctx)
    if year < this_year or year > this_year + 50:
        raise cards.card_error(
            "invalid_expiry_year", "Your card's expiration year is invalid.", param="exp_year"
        )


def _full_year(year: int) -> int:
    return year + 2000 if year < 100 else year


def _this_year(ctx: Ctx) -> int:
    import datetime as dt

    return dt.datetime.fromtimestamp(ctx.state.now(), dt.UTC).year


def _billing(p: Params) -> dict[str, Any]:
    billing = p.sub("billing_details", BILLING)
    values: dict[str, Any] = {k: billing.str(k) for k in ("email", "name", "phone") if k in billing}
    if "address" in billing:
        address = billing.sub(
            "address", ("city", "country", "line1", "line2", "postal_code", "state")
        )
        values["address"] = {
            k: address.str(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")
        }
    return values


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("payment_method", id)


def update(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    pm = ctx.state.get("payment_method", id)
    p.only(("billing_details", "metadata", "card", "allow_redisplay"))
    card_p = p.sub("card", ("exp_month", "exp_year"))
    billing = _billing(p)
    exp_month = card_p.int("exp_month") or pm["card"]["exp_month"]
    exp_year = card_p.int("exp_year") or pm["card"]["exp_year"]
    check_expiry(ctx, exp_month, exp_year)
    if "metadata" in p:
        pm["metadata"] = metadata(p.raw("metadata"), pm["metadata"])
    pm["billing_details"].update(billing)
    pm["card"]["exp_month"] = exp_month
    pm["card"]["exp_year"] = _full_year(exp_year)
    ctx.state.emit("payment_method.updated", pm, ctx)
    return pm


def attach(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only(("customer",))
    customer = ctx.state.get("customer", p.str("customer", required=True), "customer")
    return attach_to(ctx, id, customer)


def detach(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only(())
    pm = ctx.state.get("payment_method", id)
    if pm["customer"] is None:
        raise state_error(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible.",
            code="payment_method_unexpected_state",
        )
    customer = ctx.state.find(pm["customer"])
    pm["customer"] = None
    if customer and customer["invoice_settings"]["default_payment_method"] == pm["id"]:
        customer["invoice_settings"]["default_payment_method"] = None
    ctx.state.emit("payment_method.detached", pm, ctx)
    return pm


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "customer", "type"))
    customer = p.str("customer")
    if customer:
        ctx.state.get("customer", customer, "customer")
    return _list(ctx, p, customer, "/v1/payment_methods")


def list_for_customer(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "type"))
    ctx.state.get("customer", id)
    return _list(ctx, p, id, f"/v1/customers/{id}/payment_methods")


def _list(ctx: Ctx, p: Params, customer: str | None, url: str) -> dict[str, Any]:
    p.enum("type", ("card",))
    items = [
        pm
        for pm in ctx.state.all("payment_method")
        if (customer is None and pm["customer"] is not None) or pm["customer"] == customer
    ]
    return paginate(items, p, url)


ROUTES = [
    Route("POST", "/v1/payment_methods", create),
    Route("GET", "/v1/payment_methods", list_),
    Route("GET", "/v1/payment_methods/{id}", retrieve),
    Route("POST", "/v1/payment_methods/{id}", update),
    Route("POST", "/v1/payment_methods/{id}/attach", attach),
    Route("POST", "/v1/payment_methods/{id}/detach", detach),
    Route("GET", "/v1/customers/{id}/payment_methods", list_for_customer),
]
