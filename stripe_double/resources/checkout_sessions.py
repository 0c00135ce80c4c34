"""Checkout sessions (mode ``payment`` or ``setup``) and their completion by the hosted page.

Double-only shortcut, not Stripe: ``amount`` + ``currency`` instead of ``line_items`` makes
one line "Payment". Application code should send ``line_items`` so it runs on real Stripe.
"""

from __future__ import annotations

from typing import Any

from stripe_double import cards, charging, ids, money
from stripe_double.asgi import Route
from stripe_double.errors import invalid, missing_param, state_error
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.resources import payment_intents, payment_methods, setup_intents
from stripe_double.state import Ctx

DEFAULT_LIFETIME = 24 * 3600
CREATE_PARAMS = (
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "customer",
    "customer_email",
    "client_reference_id",
    "metadata",
    "payment_intent_data",
    "setup_intent_data",
    "payment_method_types",
    "currency",
    "expires_at",
    "locale",
    "submit_type",
    "ui_mode",
    "amount",
)


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(CREATE_PARAMS)
    mode = p.enum("mode", ("payment", "setup", "subscription"))
    if mode is None:
        raise missing_param("mode")
    if mode == "subscription":
        raise invalid("The Stripe double supports mode=payment and mode=setup only.", param="mode")
    p.enum("ui_mode", ("hosted",))
    customer_id, email = p.str("customer"), p.str("customer_email")
    if customer_id and email:
        raise invalid(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer_email",
            code="parameters_exclusive",
        )
    if customer_id:
        ctx.state.get("customer", customer_id, "customer")
    items = _line_items(ctx, p, mode)
    currency = items[0]["currency"] if items else None
    if mode == "setup" and p.str("currency"):
        currency = money.currency_param(p.str("currency"))
    subtotal = sum(i["amount_subtotal"] for i in items)
    if mode == "payment":
        assert currency is not None
        money.check_charge_amount(subtotal, currency)
    pi_data = p.sub(
        "payment_intent_data",
        ("metadata", "description", "setup_future_usage", "receipt_email", "capture_method"),
    )
    si_data = p.sub("setup_intent_data", ("metadata", "description"))
    pi_data.enum("setup_future_usage", ("on_session", "off_session"))
    pi_data.enum("capture_method", ("automatic", "automatic_async"))
    created = ctx.state.ts()
    expires_at = p.int("expires_at") or created + DEFAULT_LIFETIME
    if not created + 1800 <= expires_at <= created + DEFAULT_LIFETIME:
        raise invalid(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
            param="expires_at",
        )
    meta = metadata(p.raw("metadata"))
    session = ctx.state.new(
        "cs_test",
        "checkout.session",
        amount_subtotal=subtotal if mode == "payment" else None,
        amount_total=subtotal if mode == "payment" else None,
        cancel_url=p.str("cancel_url"),
        client_reference_id=p.str("client_reference_id"),
        created=created,
        currency=currency,
        customer=customer_id,
        customer_creation="if_required" if mode == "payment" and not customer_id else None,
        customer_details=None,
        customer_email=email,
        expires_at=expires_at,
        locale=p.str("locale"),
        metadata=meta,
        mode=mode,
        payment_intent=None,
        payment_method_types=["card"],
        payment_status="unpaid" if mode == "payment" else "no_payment_required",
        setup_intent=None,
        status="open",
        success_url=p.str("success_url"),
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted",
        url=None,
    )
    session["url"] = f"{ctx.base_url}/_hosted/checkout/{session['id']}"
    meta_store = ctx.state.meta[session["id"]]
    meta_store["line_items"] = items
    meta_store["payment_intent_data"] = pi_data.data
    meta_store["setup_intent_data"] = si_data.data
    return session


def _line_items(ctx: Ctx, p: Params, mode: str) -> list[dict[str, Any]]:
    raw = p.list("line_items")
    if mode == "setup":
        if raw:
            raise invalid("line_items cannot be used in setup mode.", param="line_items")
        return []
    if "amount" in p:
        if raw:
            raise invalid(
                "You may only specify one of these parameters: amount, line_items.",
                param="amount",
                code="parameters_exclusive",
            )
        amount = p.int("amount", required=True, minimum=1)
        currency = money.currency_param(p.str("currency"))
        raw = [
            {
                "quantity": "1",
                "price_data": {
                    "currency": currency,
                    "unit_amount": str(amount),
                    "product_data": {"name": "Payment"},
                },
            }
        ]
    if not raw:
        raise invalid(
            "You must specify `line_items` in `payment` mode.",
            param="line_items",
            code="parameter_missing",
        )
    items = []
    for index, entry in enumerate(raw):
        prefix = f"line_items[{index}]"
        if not isinstance(entry, dict):
            raise invalid(f"Invalid object: {prefix}", param=prefix)
        item = Params(entry).only(("price_data", "quantity", "price", "adjustable_quantity"))
        if item.str("price"):
            raise invalid(
                f"No such price: '{item.str('price')}' (the double supports price_data only)",
                param=f"{prefix}[price]",
                code="resource_missing",
            )
        quantity = item.int("quantity", minimum=1)
        if quantity is None:
            raise missing_param(f"{prefix}[quantity]")
        price = item.sub(
            "price_data",
            ("currency", "unit_amount", "unit_amount_decimal", "product_data", "product"),
        )
        currency = money.currency_param(price.str("currency"), f"{prefix}[price_data][currency]")
        unit = price.int("unit_amount", minimum=0)
        if unit is None:
            raise missing_param(f"{prefix}[price_data][unit_amount]")
        product = price.sub("product_data", ("name", "description", "metadata", "images"))
        name = product.str("name")
        if not name:
            raise missing_param(f"{prefix}[price_data][product_data][name]")
        if items and items[0]["currency"] != currency:
            raise invalid(
                "All line items must use the same currency.",
                param=f"{prefix}[price_data][currency]",
            )
        total = unit * quantity
        items.append(
            {
                "id": ids.new_id("li"),
                "object": "item",
                "amount_discount": 0,
                "amount_subtotal": total,
                "amount_tax": 0,
                "amount_total": total,
                "currency": currency,
                "description": name,
                "price": {
                    "id": ids.new_id("price"),
                    "object": "price",
                    "active": False,
                    "currency": currency,
                    "product": ids.new_id("prod"),
                    "type": "one_time",
                    "unit_amount": unit,
                },
                "quantity": quantity,
            }
        )
    return items


def line_items_of(ctx: Ctx, session: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": ctx.state.meta[session["id"]].get("line_items", []),
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }


def refresh(ctx: Ctx, session: dict[str, Any]) -> dict[str, Any]:
    """Expire an open session whose ``expires_at`` has passed."""
    if session["status"] == "open" and ctx.state.ts() >= session["expires_at"]:
        session["status"] = "expired"
        ctx.state.emit("checkout.session.expired", session, ctx)
    return session


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return refresh(ctx, ctx.state.get("checkout.session", id))


def line_items(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only(LIST_PARAMS)
    session = ctx.state.get("checkout.session", id)
    url = f"/v1/checkout/sessions/{id}/line_items"
    return paginate(ctx.state.meta[session["id"]].get("line_items", []), p, url)


def expire(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    session = refresh(ctx, ctx.state.get("checkout.session", id))
    p.only(())
    if session["status"] != "open":
        raise state_error(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".'
        )
    session["status"] = "expired"
    ctx.state.emit("checkout.session.expired", session, ctx)
    return session


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "customer", "payment_intent", "status"))
    customer, pi, status = p.str("customer"), p.str("payment_intent"), p.str("status")
    items = [
        s
        for s in ctx.state.all("checkout.session")
        if customer in (None, s["customer"])
        and pi in (None, s["payment_intent"])
        and status in (None, s["status"])
    ]
    return paginate(items, p, "/v1/checkout/sessions")


# ---- completion by the hosted page ---------------------------------------------------------


def pay_with_card(
    ctx: Ctx,
    session: dict[str, Any],
    card: cards.CardSpec,
    *,
    exp_month: int,
    exp_year: int,
    name: str | None,
    email: str | None,
) -> tuple[str, str]:
    """("complete", redirect) | ("requires_action", auth url) | ("declined", message)."""
    billing = {"name": name or None, "email": email or session["customer_email"]}
    pm = payment_methods.build(ctx, card, exp_month=exp_month, exp_year=exp_year, billing=billing)
    return_url = f"{ctx.base_url}/_hosted/checkout/{session['id']}/return"
    store = ctx.state.meta[session["id"]]
    if session["mode"] == "payment":
        pi = _session_intent(ctx, session)
        pi.update(payment_method=pm["id"], status="requires_confirmation")
        ctx.state.meta[pi["id"]]["return_url"] = return_url
        outcome = charging.pay(ctx, pi, off_session=False)
        intent = pi
    else:
        si_data = store["setup_intent_data"]
        si = setup_intents.new_intent(
            ctx,
            customer=session["customer"],
            payment_method=pm["id"],
            description=si_data.get("description"),
            meta=metadata(si_data.get("metadata")),
        )
        session["setup_intent"] = si["id"]
        ctx.state.meta[si["id"]]["return_url"] = return_url
        outcome = charging.setup(ctx, si)
        intent = si
    store["customer_details"] = billing
    if outcome == "requires_action":
        return outcome, intent["next_action"]["redirect_to_url"]["url"]
    if outcome == "declined":
        error = intent.get("last_payment_error") or intent.get("last_setup_error") or {}
        return outcome, error.get("message", "Your card was declined.")
    return "complete", finish(ctx, session)


def _session_intent(ctx: Ctx, session: dict[str, Any]) -> dict[str, Any]:
    if session["payment_intent"]:
        return ctx.state.get("payment_intent", session["payment_intent"])
    data = ctx.state.meta[session["id"]]["payment_intent_data"]
    pi = payment_intents.new_intent(
        ctx,
        amount=session["amount_total"],
        currency=session["currency"],
        customer=session["customer"],
        description=data.get("description"),
        meta=metadata(data.get("metadata")),
        setup_future_usage=data.get("setup_future_usage") or None,
        receipt_email=data.get("receipt_email") or None,
    )
    session["payment_intent"] = pi["id"]
    return pi


def after_authentication(ctx: Ctx, session: dict[str, Any]) -> tuple[str, str]:
    """Where the 3-D Secure page returns: complete the session or report the failure."""
    if session["status"] == "complete":
        return "complete", success_location(session)
    intent_id = session["payment_intent"] or session["setup_intent"]
    intent = ctx.state.find(intent_id or "")
    if intent is not None and intent["status"] == "succeeded":
        return "complete", finish(ctx, session)
    error = (intent or {}).get("last_payment_error") or (intent or {}).get("last_setup_error")
    return "declined", (error or {}).get("message", "The payment was not completed.")


def finish(ctx: Ctx, session: dict[str, Any]) -> str:
    details = ctx.state.meta[session["id"]].get("customer_details", {})
    session.update(
        status="complete",
        payment_status="paid" if session["mode"] == "payment" else "no_payment_required",
        customer_details={
            "address": None,
            "email": details.get("email"),
            "name": details.get("name"),
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
    )
    ctx.state.emit("checkout.session.completed", session, ctx)
    return success_location(session)


def success_location(session: dict[str, Any]) -> str:
    url = session["success_url"] or f"/_hosted/checkout/{session['id']}"
    return url.replace("{CHECKOUT_SESSION_ID}", session["id"])


ROUTES = [
    Route("POST", "/v1/checkout/sessions", create),
    Route("GET", "/v1/checkout/sessions", list_),
    Route("GET", "/v1/checkout/sessions/{id}", retrieve),
    Route("GET", "/v1/checkout/sessions/{id}/line_items", line_items),
    Route("POST", "/v1/checkout/sessions/{id}/expire", expire),
]
