"""Customers: create, retrieve, update, list."""

from __future__ import annotations

from typing import Any

from stripe_double.asgi import Route
from stripe_double.errors import invalid
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.state import Ctx

FIELDS = ("email", "name", "description", "phone")
ADDRESS = ("city", "country", "line1", "line2", "postal_code", "state")


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*FIELDS, "metadata", "address", "invoice_settings", "payment_method"))
    values = {name: p.str(name) for name in FIELDS}
    address = _address(p)
    meta = metadata(p.raw("metadata"))
    settings = p.sub("invoice_settings", ("default_payment_method",))
    default_pm = settings.str("default_payment_method")
    customer = ctx.state.new(
        "cus",
        "customer",
        address=address,
        balance=0,
        currency=None,
        default_source=None,
        delinquent=False,
        description=values["description"],
        email=values["email"],
        invoice_prefix=None,
        invoice_settings={
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        metadata=meta,
        name=values["name"],
        phone=values["phone"],
        preferred_locales=[],
        shipping=None,
        tax_exempt="none",
    )
    ctx.state.emit("customer.created", customer, ctx)
    if p.str("payment_method") or default_pm:
        from stripe_double.resources import payment_methods

        pm = payment_methods.attach_to(ctx, p.str("payment_method") or default_pm, customer)
        if default_pm:
            customer["invoice_settings"]["default_payment_method"] = pm["id"]
    return customer


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("customer", id)


def update(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    customer = ctx.state.get("customer", id)
    p.only((*FIELDS, "metadata", "address", "invoice_settings"))
    changes: dict[str, Any] = {name: p.str(name) for name in FIELDS if name in p}
    if "metadata" in p:
        changes["metadata"] = metadata(p.raw("metadata"), customer["metadata"])
    if "address" in p:
        changes["address"] = _address(p)
    settings = p.sub("invoice_settings", ("default_payment_method",))
    if "default_payment_method" in settings:
        pm_id = settings.str("default_payment_method") or None
        if pm_id:
            pm = ctx.state.get("payment_method", pm_id, "invoice_settings[default_payment_method]")
            if pm["customer"] != customer["id"]:
                raise invalid(
                    f"No such PaymentMethod: '{pm_id}'; It's possible this PaymentMethod "
                    "exists on one of your connected accounts, in which case you should retry "
                    "this request on that connected account.",
                    param="invoice_settings[default_payment_method]",
                    code="resource_missing",
                )
        changes["invoice_settings"] = {
            **customer["invoice_settings"],
            "default_payment_method": pm_id,
        }
    previous = {k: customer[k] for k, v in changes.items() if customer[k] != v}
    customer.update(changes)
    if previous:
        ctx.state.emit("customer.updated", customer, ctx, previous)
    return customer


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "email"))
    email = p.str("email")
    items = [c for c in ctx.state.all("customer") if email is None or c["email"] == email]
    return paginate(items, p, "/v1/customers")


def _address(p: Params) -> dict[str, Any] | None:
    if p.raw("address") in (None, ""):
        return None
    sub = p.sub("address", ADDRESS)
    return {name: sub.str(name) for name in ADDRESS}


ROUTES = [
    Route("POST", "/v1/customers", create),
    Route("GET", "/v1/customers", list_),
    Route("GET", "/v1/customers/{id}", retrieve),
    Route("POST", "/v1/customers/{id}", update),
]
