"""Charges (created by payment intents): retrieve, list; balance transactions and balance."""

from __future__ import annotations

from typing import Any

from stripe_double.asgi import Route
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params
from stripe_double.state import Ctx


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("charge", id)


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "customer", "payment_intent"))
    customer, pi = p.str("customer"), p.str("payment_intent")
    items = [
        c
        for c in ctx.state.all("charge")
        if customer in (None, c["customer"]) and pi in (None, c["payment_intent"])
    ]
    return paginate(items, p, "/v1/charges")


def refunds_of(ctx: Ctx, charge: dict[str, Any]) -> dict[str, Any]:
    """The ``refunds`` list Stripe includes on a charge when expanded."""
    data = [r for r in ctx.state.all("refund") if r["charge"] == charge["id"]]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/charges/{charge['id']}/refunds",
    }


def retrieve_txn(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("balance_transaction", id)


def list_txns(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "type", "source", "currency", "payout"))
    kind, source, currency = p.str("type"), p.str("source"), p.str("currency")
    items = [
        t
        for t in ctx.state.all("balance_transaction")
        if kind in (None, t["type"])
        and source in (None, t["source"])
        and currency in (None, t["currency"])
    ]
    return paginate(items, p, "/v1/balance_transactions")


def balance(ctx: Ctx, p: Params) -> dict[str, Any]:
    now = ctx.state.ts()
    available: dict[str, int] = {}
    pending: dict[str, int] = {}
    for txn in ctx.state.all("balance_transaction"):
        bucket = available if txn["available_on"] <= now else pending
        bucket[txn["currency"]] = bucket.get(txn["currency"], 0) + txn["net"]

    def rows(bucket: dict[str, int]) -> list[dict[str, Any]]:
        return [
            {"amount": amount, "currency": cur, "source_types": {"card": amount}}
            for cur, amount in sorted(bucket.items())
        ]

    return {
        "object": "balance",
        "available": rows(available),
        "livemode": False,
        "pending": rows(pending),
    }


ROUTES = [
    Route("GET", "/v1/charges", list_),
    Route("GET", "/v1/charges/{id}", retrieve),
    Route("GET", "/v1/balance_transactions", list_txns),
    Route("GET", "/v1/balance_transactions/{id}", retrieve_txn),
    Route("GET", "/v1/balance", balance),
]
