"""Disputes (chargebacks): opened by a test control, then retrieve / update evidence / close.

Submitting evidence whose ``uncategorized_text`` is ``winning_evidence`` or
``losing_evidence`` decides the dispute at once, as in Stripe's test mode.
"""

from __future__ import annotations

from typing import Any

from stripe_double import charging, money
from stripe_double.asgi import Route
from stripe_double.errors import invalid, state_error
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.state import Ctx

REASONS = (
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
EVIDENCE = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
OPEN = ("warning_needs_response", "needs_response", "warning_under_review", "under_review")
RESPONDABLE = ("warning_needs_response", "needs_response")
EVIDENCE_WINDOW = 7 * 24 * 3600


def open_dispute(
    ctx: Ctx, charge: dict[str, Any], *, reason: str = "fraudulent", amount: int | None = None
) -> dict[str, Any]:
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge['id']} did not succeed; it cannot be disputed.")
    if charge["disputed"]:
        raise invalid(f"Charge {charge['id']} is already disputed.")
    disputable = charge["amount"] - charge["amount_refunded"]
    amount = disputable if amount is None else amount
    if not 1 <= amount <= disputable:
        raise invalid(f"The dispute amount must be between 1 and {disputable}.", param="amount")
    created = ctx.state.ts()
    dispute = ctx.state.new(
        "dp",
        "dispute",
        amount=amount,
        balance_transactions=[],
        charge=charge["id"],
        created=created,
        currency=charge["currency"],
        evidence=dict.fromkeys(EVIDENCE),
        evidence_details={
            "due_by": created + EVIDENCE_WINDOW,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        is_charge_refundable=False,
        metadata={},
        payment_intent=charge["payment_intent"],
        reason=reason,
        status="needs_response",
    )
    txn = charging.balance_transaction(
        ctx,
        amount=-amount,
        currency=charge["currency"],
        source=dispute["id"],
        type_="adjustment",
        category="dispute",
        description=f"Chargeback withdrawal for {charge['id']}",
        fee=money.DISPUTE_FEE,
        fee_description="Dispute fee",
    )
    dispute["balance_transactions"].append(dict(txn))
    charge["disputed"] = True
    ctx.state.emit("charge.dispute.created", dispute, ctx)
    ctx.state.emit("charge.dispute.funds_withdrawn", dispute, ctx)
    return dispute


def decide(ctx: Ctx, dispute: dict[str, Any], won: bool) -> dict[str, Any]:
    if dispute["status"] not in OPEN:
        raise state_error(
            f"This dispute is already closed (status {dispute['status']}).",
            code="dispute_already_closed",
        )
    if won:
        txn = charging.balance_transaction(
            ctx,
            amount=dispute["amount"],
            currency=dispute["currency"],
            source=dispute["id"],
            type_="adjustment",
            category="dispute_reversal",
            description=f"Chargeback reversal for {dispute['charge']}",
        )
        dispute["balance_transactions"].append(dict(txn))
    dispute["status"] = "won" if won else "lost"
    if won:
        ctx.state.emit("charge.dispute.funds_reinstated", dispute, ctx)
    ctx.state.emit("charge.dispute.closed", dispute, ctx)
    return dispute


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("dispute", id)


def update(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    dispute = ctx.state.get("dispute", id)
    p.only(("evidence", "metadata", "submit"))
    evidence = p.sub("evidence", EVIDENCE)
    values = {name: evidence.str(name, max_length=150000) for name in evidence.data}
    submit = p.bool("submit", default=True)
    meta = metadata(p.raw("metadata"), dispute["metadata"]) if "metadata" in p else None
    if (values or submit) and dispute["status"] not in RESPONDABLE:
        raise state_error(
            f"This dispute has a status of {dispute['status']}; evidence can no longer be "
            "updated or submitted.",
            code="dispute_already_closed" if dispute["status"] in ("won", "lost") else None,
        )
    previous: dict[str, Any] = {}
    if meta is not None:
        previous["metadata"] = dispute["metadata"]
        dispute["metadata"] = meta
    if values:
        previous["evidence"] = dict(dispute["evidence"])
        dispute["evidence"].update({k: v or None for k, v in values.items()})
        dispute["evidence_details"]["has_evidence"] = True
    if submit and dispute["status"] in RESPONDABLE:
        previous["status"] = dispute["status"]
        dispute["status"] = (
            "warning_under_review"
            if dispute["status"] == "warning_needs_response"
            else "under_review"
        )
        dispute["evidence_details"]["submission_count"] += 1
    ctx.state.emit("charge.dispute.updated", dispute, ctx, previous)
    text = dispute["evidence"].get("uncategorized_text")
    if submit and text in ("winning_evidence", "losing_evidence"):
        decide(ctx, dispute, won=text == "winning_evidence")
    return dispute


def close(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    """Accepting the dispute: it is lost."""
    dispute = ctx.state.get("dispute", id)
    p.only(())
    return decide(ctx, dispute, won=False)


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "charge", "payment_intent"))
    charge, pi = p.str("charge"), p.str("payment_intent")
    items = [
        d
        for d in ctx.state.all("dispute")
        if charge in (None, d["charge"]) and pi in (None, d["payment_intent"])
    ]
    return paginate(items, p, "/v1/disputes")


ROUTES = [
    Route("GET", "/v1/disputes", list_),
    Route("GET", "/v1/disputes/{id}", retrieve),
    Route("POST", "/v1/disputes/{id}", update),
    Route("POST", "/v1/disputes/{id}/close", close),
]
