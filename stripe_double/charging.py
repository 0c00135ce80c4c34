"""The card network of the double: charges, balance transactions, 3-D Secure, declines.

Used by payment intents (API, hosted checkout, the authentication page) and setup intents.
Everything here runs under the state lock and emits the events Stripe emits.
"""

from __future__ import annotations

from typing import Any

from stripe_double import cards, money
from stripe_double.errors import StripeError
from stripe_double.resources import payment_methods
from stripe_double.state import Ctx

AVAILABLE_AFTER = 2 * 24 * 3600
AUTH_FAILURE_MESSAGE = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
    "or a new PaymentMethod to attempt to fulfill this {kind} again."
)


def balance_transaction(
    ctx: Ctx,
    *,
    amount: int,
    currency: str,
    source: str,
    type_: str,
    category: str,
    description: str | None = None,
    fee: int = 0,
    fee_description: str = "Stripe processing fees",
) -> dict[str, Any]:
    created = ctx.state.ts()
    return ctx.state.new(
        "txn",
        "balance_transaction",
        amount=amount,
        available_on=created + AVAILABLE_AFTER,
        created=created,
        currency=currency,
        description=description,
        exchange_rate=None,
        fee=fee,
        fee_details=(
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": fee_description,
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        ),
        net=amount - fee,
        reporting_category=category,
        source=source,
        status="pending",
        type=type_,
    )


def _charge(
    ctx: Ctx, pi: dict[str, Any], pm: dict[str, Any], decline: cards.Decline | None
) -> dict[str, Any]:
    ok = decline is None
    charge = ctx.state.new(
        "ch",
        "charge",
        amount=pi["amount"],
        amount_captured=pi["amount"] if ok else 0,
        amount_refunded=0,
        balance_transaction=None,
        billing_details=pm["billing_details"],
        calculated_statement_descriptor="LEDGERLINE TEST",
        captured=ok,
        currency=pi["currency"],
        customer=pi["customer"],
        description=pi["description"],
        disputed=False,
        failure_balance_transaction=None,
        failure_code=decline.code if decline else None,
        failure_message=decline.message if decline else None,
        metadata=dict(pi["metadata"]),
        outcome=_outcome(decline),
        paid=ok,
        payment_intent=pi["id"],
        payment_method=pm["id"],
        payment_method_details={"card": _card_details(pm), "type": "card"},
        receipt_email=pi.get("receipt_email"),
        receipt_url=None,
        refunded=False,
        status="succeeded" if ok else "failed",
    )
    meta = ctx.state.meta[charge["id"]]
    meta["idempotency_key"] = ctx.idempotency_key
    if ok:
        txn = balance_transaction(
            ctx,
            amount=charge["amount"],
            currency=charge["currency"],
            source=charge["id"],
            type_="charge",
            category="charge",
            description=pi["description"],
            fee=money.processing_fee(charge["amount"]),
        )
        charge["balance_transaction"] = txn["id"]
    return charge


def _outcome(decline: cards.Decline | None) -> dict[str, Any]:
    if decline is None:
        return {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
    return {
        "network_status": "declined_by_network",
        "reason": decline.decline_code,
        "risk_level": "normal",
        "risk_score": 20,
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }


def _card_details(pm: dict[str, Any]) -> dict[str, Any]:
    card = pm["card"]
    return {
        key: card[key]
        for key in ("brand", "checks", "country", "exp_month", "exp_year", "fingerprint")
    } | {"funding": card["funding"], "last4": card["last4"], "network": card["brand"]}


def needs_authentication(ctx: Ctx, pm: dict[str, Any]) -> bool:
    card = payment_methods.card_of(ctx, pm)
    if card.behaviour in (cards.AUTH_ALWAYS, cards.AUTH_THEN_DECLINE):
        return True
    if card.behaviour == cards.AUTH_UNLESS_SETUP:
        return not ctx.state.meta[pm["id"]].get("setup_off_session", False)
    return False


def next_action(ctx: Ctx, intent: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "redirect_to_url",
        "redirect_to_url": {
            "return_url": ctx.state.meta[intent["id"]].get("return_url"),
            "url": f"{ctx.base_url}/_hosted/authenticate/{intent['id']}",
        },
    }


def pay(ctx: Ctx, pi: dict[str, Any], *, off_session: bool, authenticated: bool = False) -> str:
    """Confirm a payment intent with its payment method: "succeeded", "requires_action"
    or "declined" (the intent then carries ``last_payment_error``)."""
    pm = ctx.state.get("payment_method", pi["payment_method"], "payment_method")
    card = payment_methods.card_of(ctx, pm)
    if needs_authentication(ctx, pm) and not authenticated:
        if not off_session:
            pi.update(status="requires_action", next_action=next_action(ctx, pi))
            pi["last_payment_error"] = None
            ctx.state.emit("payment_intent.requires_action", pi, ctx)
            return "requires_action"
        decline: cards.Decline | None = cards.AUTH_REQUIRED
    elif card.behaviour in (cards.DECLINE, cards.CHARGE_FAILS, cards.AUTH_THEN_DECLINE):
        decline = card.decline or cards.GENERIC
    else:
        decline = None
    charge = _charge(ctx, pi, pm, decline)
    pi.update(latest_charge=charge["id"], next_action=None)
    if decline is not None:
        pi.update(
            status="requires_payment_method",
            last_payment_error={
                "charge": charge["id"],
                "code": decline.code,
                "decline_code": decline.decline_code,
                "doc_url": "https://stripe.com/docs/error-codes/" + decline.code.replace("_", "-"),
                "message": decline.message,
                "payment_method": dict(pm),
                "type": "card_error",
            },
        )
        ctx.state.emit("charge.failed", charge, ctx)
        ctx.state.emit("payment_intent.payment_failed", pi, ctx)
        return "declined"
    pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
    if pi.get("setup_future_usage") and pi["customer"]:
        customer = ctx.state.get("customer", pi["customer"], "customer")
        if pm["customer"] is None:
            payment_methods.attach_to(ctx, pm["id"], customer)
        ctx.state.meta[pm["id"]]["setup_off_session"] = True
    ctx.state.emit("charge.succeeded", charge, ctx)
    ctx.state.emit("payment_intent.succeeded", pi, ctx)
    if card.behaviour == cards.DISPUTE:
        from stripe_double.resources import disputes

        disputes.open_dispute(ctx, charge, reason="fraudulent")
    return "succeeded"


def decline_error(pi: dict[str, Any]) -> StripeError:
    """The 402 answer to a declined confirmation, carrying the payment intent."""
    error = pi["last_payment_error"]
    return cards.card_error(
        error["code"],
        error["message"],
        decline_code=error.get("decline_code"),
        extra={
            "charge": error.get("charge"),
            "payment_intent": dict(pi),
            "payment_method": error.get("payment_method"),
            "request_log_url": None,
        },
    )


def setup(ctx: Ctx, si: dict[str, Any], *, authenticated: bool = False) -> str:
    """Confirm a setup intent: "succeeded", "requires_action" or "declined"."""
    pm = ctx.state.get("payment_method", si["payment_method"], "payment_method")
    card = payment_methods.card_of(ctx, pm)
    if card.behaviour == cards.DECLINE:
        decline = card.decline or cards.GENERIC
        si.update(
            status="requires_payment_method",
            next_action=None,
            last_setup_error={
                "code": decline.code,
                "decline_code": decline.decline_code,
                "message": decline.message,
                "payment_method": dict(pm),
                "type": "card_error",
            },
        )
        ctx.state.emit("setup_intent.setup_failed", si, ctx)
        return "declined"
    auth = card.behaviour in (cards.AUTH_ALWAYS, cards.AUTH_UNLESS_SETUP, cards.AUTH_THEN_DECLINE)
    if auth and not authenticated:
        si.update(status="requires_action", next_action=next_action(ctx, si))
        ctx.state.emit("setup_intent.requires_action", si, ctx)
        return "requires_action"
    if si["customer"]:
        customer = ctx.state.get("customer", si["customer"], "customer")
        payment_methods.attach_to(ctx, pm["id"], customer)
    if si["usage"] == "off_session":
        ctx.state.meta[pm["id"]]["setup_off_session"] = True
    si.update(status="succeeded", next_action=None, last_setup_error=None)
    ctx.state.emit("setup_intent.succeeded", si, ctx)
    return "succeeded"


def setup_error(si: dict[str, Any]) -> StripeError:
    error = si["last_setup_error"]
    return cards.card_error(
        error["code"],
        error["message"],
        decline_code=error.get("decline_code"),
        extra={"payment_method": error.get("payment_method"), "setup_intent": dict(si)},
    )


def authenticate(ctx: Ctx, intent: dict[str, Any], success: bool) -> str:
    """The 3-D Secure page's answer for an intent in ``requires_action``."""
    if intent["status"] != "requires_action":
        return intent["status"]
    if intent["object"] == "payment_intent":
        if success:
            pay(ctx, intent, off_session=False, authenticated=True)
            if intent["status"] == "succeeded" and intent.get("setup_future_usage"):
                ctx.state.meta[intent["payment_method"]]["setup_off_session"] = True
            return intent["status"]
        pm = ctx.state.get("payment_method", intent["payment_method"])
        intent.update(
            status="requires_payment_method",
            next_action=None,
            last_payment_error={
                "code": "payment_intent_authentication_failure",
                "doc_url": "https://stripe.com/docs/error-codes/"
                "payment-intent-authentication-failure",
                "message": AUTH_FAILURE_MESSAGE.format(kind="PaymentIntent"),
                "payment_method": dict(pm),
                "type": "invalid_request_error",
            },
        )
        ctx.state.emit("payment_intent.payment_failed", intent, ctx)
        return intent["status"]
    if success:
        return setup(ctx, intent, authenticated=True)
    pm = ctx.state.get("payment_method", intent["payment_method"])
    intent.update(
        status="requires_payment_method",
        next_action=None,
        last_setup_error={
            "code": "setup_intent_authentication_failure",
            "message": AUTH_FAILURE_MESSAGE.format(kind="SetupIntent"),
            "payment_method": dict(pm),
            "type": "invalid_request_error",
        },
    )
    ctx.state.emit("setup_intent.setup_failed", intent, ctx)
    return intent["status"]
