"""Refunds of a payment intent's (or charge's) successful charge, full or partial."""

from __future__ import annotations

from typing import Any

from stripe_double import charging, money
from stripe_double.asgi import Route
from stripe_double.errors import invalid, state_error
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.state import Ctx

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(("payment_intent", "charge", "amount", "reason", "metadata"))
    pi_id, charge_id = p.str("payment_intent"), p.str("charge")
    if bool(pi_id) == bool(charge_id):
        raise invalid(
            "You must pass either a charge or a payment_intent (and not both).",
            param="payment_intent",
        )
    amount = p.int("amount", minimum=1)
    reason = p.enum("reason", REASONS)
    meta = metadata(p.raw("metadata"))
    if pi_id:
        pi = ctx.state.get("payment_intent", pi_id, "payment_intent")
        if pi["status"] != "succeeded" or not pi["latest_charge"]:
            raise state_error(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
                param="payment_intent",
            )
        charge = ctx.state.get("charge", pi["latest_charge"], "payment_intent")
    else:
        charge = ctx.state.get("charge", charge_id, "charge")
    return refund_charge(ctx, charge, amount, reason, meta)


def refund_charge(
    ctx: Ctx,
    charge: dict[str, Any],
    amount: int | None,
    reason: str | None,
    meta: dict[str, str],
) -> dict[str, Any]:
    if charge["status"] != "succeeded":
        raise state_error(
            f"Charge {charge['id']} has not succeeded; it cannot be refunded.",
            code="charge_not_refundable",
        )
    if charge["disputed"]:
        raise state_error(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    remaining = charge["amount"] - charge["amount_refunded"]
    if remaining <= 0:
        raise state_error(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = remaining if amount is None else amount
    if amount > remaining:
        currency = charge["currency"]
        raise state_error(
            f"Refund amount ({money.format_amount(amount, currency)} {currency}) is greater "
            f"than unrefunded amount on charge ({money.format_amount(remaining, currency)} "
            f"{currency})",
            code="amount_too_large",
            param="amount",
        )
    refund = ctx.state.new(
        "re",
        "refund",
        amount=amount,
        balance_transaction=None,
        charge=charge["id"],
        currency=charge["currency"],
        destination_details={"card": {"type": "refund"}, "type": "card"},
        metadata=meta,
        payment_intent=charge["payment_intent"],
        reason=reason,
        receipt_number=None,
        source_transfer_reversal=None,
        status="succeeded",
        transfer_reversal=None,
    )
    txn = charging.balance_transaction(
        ctx,
        amount=-amount,
        currency=charge["currency"],
        source=refund["id"],
        type_="refund",
        category="refund",
        description="REFUND FOR CHARGE",
    )
    refund["balance_transaction"] = txn["id"]
    previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    ctx.state.emit("refund.created", refund, ctx)
    ctx.state.emit("charge.refunded", charge, ctx, previous)
    return refund


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("refund", id)


def update(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    refund = ctx.state.get("refund", id)
    p.only(("metadata",))
    refund["metadata"] = metadata(p.raw("metadata"), refund["metadata"])
    ctx.state.emit("refund.updated", refund, ctx)
    return refund


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "charge", "payment_intent"))
    charge, pi = p.str("charge"), p.str("payment_intent")
    items = [
        r
        for r in ctx.state.all("refund")
        if charge in (None, r["charge"]) and pi in (None, r["payment_intent"])
    ]
    return paginate(items, p, "/v1/refunds")


ROUTES = [
    Route("POST", "/v1/refunds", create),
    Route("GET", "/v1/refunds", list_),
    Route("GET", "/v1/refunds/{id}", retrieve),
    Route("POST", "/v1/refunds/{id}", update),
]
