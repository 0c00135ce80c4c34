"""Usage aggregation in PostgreSQL: many (billing account x metric x period) windows in
one statement, with the same rules as ``core.billing.metrics`` (tests compare both). On
SQLite (the embedded default) the events of each window are read through Piccolo and
aggregated by those pure rules.

Only events received up to each window's ``cutoff`` count (what a draft was built from);
events held or discarded by the reconciliation window never count.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.billing.metrics import Metric, default_metric
from core.billing.run_tables import BillableMetric, LateUsage
from core.db import is_sqlite

_AGGREGATE = """
SELECT w.k,
       COALESCE(sum(e.quantity), 0) AS s,
       count(e.id) AS c,
       COALESCE(max(e.quantity), 0) AS m,
       count(DISTINCT (e.properties::jsonb ->> w.prop)) AS u,
       (array_agg(e.quantity ORDER BY e.occurred_at DESC, e.id DESC)
            FILTER (WHERE e.id IS NOT NULL))[1] AS l
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::timestamptz[],
            $6::timestamptz[], $7::text[], $8::text[])
     AS w(k, acct, ev, ps, pe, cutoff, prop, filt)
LEFT JOIN usage_event e
       ON e.billing_account = w.acct AND e.metric = w.ev
      AND e.occurred_at >= w.ps AND e.occurred_at < w.pe AND e.received_at <= w.cutoff
      AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(w.filt::jsonb) f
                      WHERE (e.properties::jsonb ->> f.key) IS DISTINCT FROM f.value)
      AND NOT EXISTS (SELECT 1 FROM late_usage lu WHERE lu.usage_event = e.id
                      AND lu.status IN ('held', 'discarded'))
GROUP BY w.k
"""


@dataclass(frozen=True, slots=True)
class Window:
    key: int
    billing_account: int
    metric: Metric
    start: datetime
    end: datetime
    cutoff: datetime


def pick(metric: Metric, row: Any) -> Decimal:
    value = {
        "sum": row["s"],
        "count": row["c"],
        "max": row["m"],
        "unique_count": row["u"],
        "last": row["l"],
    }[metric.aggregation]
    return Decimal(0) if value is None else Decimal(value)


async def aggregate_windows(conn: Any, windows: Sequence[Window]) -> dict[int, Decimal]:
    """``{window.key: quantity}`` for every window, in one query (the transaction's
    connection: asyncpg, or ``core.billing.sql.current()``); on SQLite, one read per
    window and the pure rules."""
    if not windows:
        return {}
    if is_sqlite():
        conn = _SqliteConn()
    rows = await conn.fetch(
        _AGGREGATE,
        [w.key for w in windows],
        [w.billing_account for w in windows],
        [w.metric.event_name for w in windows],
        [w.start for w in windows],
        [w.end for w in windows],
        [w.cutoff for w in windows],
        [w.metric.property for w in windows],
        [json.dumps(dict(w.metric.filters)) for w in windows],
    )
    by_key = {w.key: w.metric for w in windows}
    return {r["k"]: pick(by_key[r["k"]], r) for r in rows}


def metric_from_row(row: dict[str, Any]) -> Metric:
    filters = row.get("filters") or {}
    if isinstance(filters, str):
        filters = json.loads(filters or "{}")
    return Metric(
        code=row["code"],
        event_name=row["event_name"],
        aggregation=row["aggregation"],
        property=row.get("property") or "",
        filters=filters,
    )


async def metrics_by_code(codes: Sequence[str]) -> dict[str, Metric]:
    """The metric of every code (a code without a definition sums events of that name)."""
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    rows = await BillableMetric.select().where(BillableMetric.code.is_in(wanted))
    found = {r["code"]: metric_from_row(r) for r in rows}
    return {c: found.get(c) or default_metric(c) for c in wanted}


_CURRENT = """
SELECT s.id, s.billing_account, s.quantity, s.status, s.current_period_start,
       s.current_period_end, p.model, p.definition, p.currency, p.minimum_minor, p.rounding,
       p.metric, p.nickname, pr.name AS product_name, b.code AS account_code,
       b.name AS account_name, b.timezone
FROM subscription s
JOIN price p ON p.id = s.price
JOIN product pr ON pr.id = p.product
JOIN billing_account b ON b.id = s.billing_account
WHERE s.billing_account = ANY($1::bigint[]) AND s.status <> 'canceled'
ORDER BY b.code, s.id
"""


@dataclass(frozen=True, slots=True)
class UsageLine:
    subscription: int
    account_code: str
    account_name: str
    plan: str
    metric: str
    aggregation: str
    period_start: datetime
    period_end: datetime
    timezone: str
    currency: str
    quantity: Decimal | None  # usage so far (metered), None for a licensed price
    projected_quantity: Decimal
    charge_so_far_minor: int
    projected_minor: int
    trialing: bool


async def current_usage(conn: Any, account_ids: Sequence[int], now: datetime) -> list[UsageLine]:
    """Current-period usage and projected charges of the subscriptions of ``account_ids``
    (asyncpg ``conn``): metered prices priced on the usage so far and on its projection to
    the period's end (``metrics.project``); licensed prices at their quantity."""
    from core.billing.metrics import project
    from core.catalog import pricing
    from core.catalog.price_book import definition_from_row

    if not account_ids:
        return []
    rows = await conn.fetch(_CURRENT, list(account_ids))
    metrics = await metrics_by_code([r["metric"] for r in rows])
    windows = [
        Window(
            r["id"],
            r["billing_account"],
            metrics[r["metric"]],
            r["current_period_start"],
            r["current_period_end"],
            now,
        )
        for r in rows
        if r["metric"]
    ]
    used = await aggregate_windows(conn, windows)
    out = []
    for r in rows:
        definition = definition_from_row(r)
        plan = r["product_name"] + (f" ({r['nickname']})" if r["nickname"] else "")
        total = int((r["current_period_end"] - r["current_period_start"]).total_seconds())
        elapsed = int(
            (min(now, r["current_period_end"]) - r["current_period_start"]).total_seconds()
        )
        trialing = r["status"] == "trialing"
        if r["metric"]:
            metric = metrics[r["metric"]]
            qty = used.get(r["id"], Decimal(0))
            projected = project(metric.aggregation, qty, max(elapsed, 0), total)
            so_far = pricing.price(definition, qty).to_minor()
            expected = pricing.price(definition, projected).to_minor()
            aggregation = metric.aggregation
        else:
            qty = None
            projected = Decimal(r["quantity"])
            so_far = expected = 0 if trialing else pricing.price(definition, projected).to_minor()
            aggregation = ""
        out.append(
            UsageLine(
                r["id"],
                r["account_code"],
                r["account_name"],
                plan,
                r["metric"],
                aggregation,
                r["current_period_start"],
                r["current_period_end"],
                r["timezone"],
                r["currency"],
                qty,
                projected,
                so_far,
                expected,
                trialing,
            )
        )
    return out


async def usage_overview(account_ids: Sequence[int], now: datetime) -> list[UsageLine]:
    """``current_usage`` in its own read transaction (for the customer usage page); on
    SQLite (the embedded mode) the same figures come from the pure rules."""
    from core.db import engine, transaction

    async with transaction():
        if is_sqlite():
            return await current_usage(_SqliteConn(), account_ids, now)
        conn = engine().current_transaction.get().connection
        return await current_usage(conn, account_ids, now)


class _SqliteConn:
    """Just enough of an asyncpg connection for ``current_usage`` on SQLite: the two
    statements it runs, through Piccolo, with the aggregation done by the pure rules."""

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if sql is _CURRENT:
            return await self._subscriptions(args[0])
        if sql is _AGGREGATE:
            return await self._aggregate(*args)
        raise NotImplementedError(sql[:40])

    async def _subscriptions(self, account_ids: list[int]) -> list[dict[str, Any]]:
        from core.billing.tables import Subscription

        s = Subscription
        rows = await s.select(
            s.id,
            s.billing_account,
            s.quantity,
            s.status,
            s.current_period_start,
            s.current_period_end,
            s.price.model.as_alias("model"),
            s.price.definition.as_alias("definition"),
            s.price.currency.as_alias("currency"),
            s.price.minimum_minor.as_alias("minimum_minor"),
            s.price.rounding.as_alias("rounding"),
            s.price.metric.as_alias("metric"),
            s.price.nickname.as_alias("nickname"),
            s.price.product.name.as_alias("product_name"),
            s.billing_account.code.as_alias("account_code"),
            s.billing_account.name.as_alias("account_name"),
            s.billing_account.timezone.as_alias("timezone"),
        ).where(s.billing_account.is_in(list(account_ids)) & (s.status != "canceled"))
        return sorted(rows, key=lambda r: (r["account_code"], r["id"]))

    async def _aggregate(self, keys, accounts, names, starts, ends, cutoffs, props, filts):
        from core.billing.metrics import Event, aggregate
        from core.usage.tables import UsageEvent

        excluded = {
            r["usage_event"]
            for r in await LateUsage.select(LateUsage.usage_event).where(
                LateUsage.status.is_in(["held", "discarded"])
            )
        }
        out = []
        for k, acct, name, start, end, cutoff, prop, filt in zip(
            keys, accounts, names, starts, ends, cutoffs, props, filts, strict=True
        ):
            rows = await UsageEvent.select().where(
                (UsageEvent.billing_account == acct)
                & (UsageEvent.metric == name)
                & (UsageEvent.occurred_at >= start)
                & (UsageEvent.occurred_at < end)
                & (UsageEvent.received_at <= cutoff)
            )
            events = [
                Event(
                    name,
                    Decimal(r["quantity"]),
                    r["occurred_at"],
                    json.loads(r["properties"])
                    if isinstance(r["properties"], str)
                    else r["properties"] or {},
                    r["id"],
                )
                for r in rows
                if r["id"] not in excluded
            ]
            value = {}
            for kind, column in (("sum", "s"), ("count", "c"), ("max", "m"), ("last", "l")):
                value[column] = aggregate(
                    Metric(str(k), name, kind, filters=json.loads(filt)), events
                )
            value["u"] = (
                aggregate(Metric(str(k), name, "unique_count", prop, json.loads(filt)), events)
                if prop
                else 0
            )
            out.append({"k": k, **value})
        return out
