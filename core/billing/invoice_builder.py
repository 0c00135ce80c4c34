"""Bulk draft building for invoice runs.

Pure part (plain values in, plain values out): ``plan_step`` decides which period of a
subscription is due at ``as_of`` and what its period becomes; ``build_draft`` turns a
subscription's due period (price, quantity or metered usage, discount, pending charges)
into invoice lines, each rounded once.

Bulk part: ``build_chunk`` does a whole chunk in the caller's transaction with a handful
of statements, whatever its size: lock the chunk's subscriptions (``FOR UPDATE``), read
what is already billed, aggregate usage for every metered period in one query, lock the
accounts' billable pending charges, then multi-row inserts of invoices, lines and billed
periods (``unnest``), and multi-row updates of subscriptions and pending charges. No
per-invoice round trip on PostgreSQL. On SQLite (the embedded default) the same statements
run through ``core.billing.sql`` (placeholders translated, ``unnest`` statements run once
per row, no row locks: SQLite's write lock serializes the chunk's transaction).

Rules
-----
* Advance (licensed) prices: the period ``[start, end)`` is billed once it has started;
  when it has ended the subscription rolls to the next period, which is then due.
* Arrears prices and metered (usage) prices: the period is billed once it has ended, and
  the subscription rolls to the next period in the same transaction.
* One period per subscription per run (a rerun of a chunk is an exact no-op; a
  subscription several periods behind catches up one period per run).
* A subscription whose price is in another currency than its account is not billed; the
  chunk reports it.
* Trialing and canceled subscriptions bill nothing. ``cancel_at_period_end``: the last
  period is billed, the subscription never rolls over (the subscription services cancel
  it at period end).
* Discounts apply to the subscription's charge line for the periods their duration allows
  (once / N periods / forever: ``pricing.Discount.applies_in_period``), as a separate
  negative line; a fixed-amount discount never exceeds the charge.
* Pending charges (proration credits and debits, usage corrections, triggered milestones)
  of the account go on the first invoice the chunk builds for that account; an account
  with billable pending charges but no due subscription gets an invoice of its own.
* ``BilledPeriod`` (UNIQUE subscription, period_start) is written in the same transaction
  as the invoice, so a rerun, a retried job or a second worker cannot bill a period twice,
  and a killed worker loses nothing (its transaction never committed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from core.billing.metrics import Metric
from core.billing.periods import BillingAnchor, Interval, Period, period_containing
from core.billing.sql import Connection, keyed
from core.billing.usage_queries import Window, aggregate_windows
from core.catalog import pricing
from core.catalog.price_book import definition_from_row, discount_from_row
from core.ledger import accounts as acct
from core.money import Money

_SIX: Final = Decimal("0.000001")


# --------------------------------------------------------------------------- pure rules


@dataclass(frozen=True, slots=True)
class SubState:
    id: int
    billing_account: int
    status: str
    period_start: datetime
    period_end: datetime
    anchor: tuple[int, int, int]  # day, month, year (``BillingAnchor``)
    interval_months: int
    timezone: str
    arrears: bool
    cancel_at_period_end: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """What a run does to one subscription: bill ``bill`` (or nothing), and move the
    subscription's current period to ``new_period`` (or leave it)."""

    bill: Period | None
    new_period: Period | None


@lru_cache(maxsize=4096)
def following_period(end: datetime, anchor: tuple[int, int, int], months: int, tz: str) -> Period:
    """The period that starts at ``end`` for the subscription's anchor and interval, in
    its account's time zone (periods tile time: it always starts at ``end``)."""
    day, month, year = anchor
    period = period_containing(end, BillingAnchor(day, month, year), Interval(months), tz)
    if period.start != end:  # the anchor moved (an interval change): keep tiling time
        period = Period(end, period.end if period.end > end else end + timedelta(days=1))
    return period


def plan_step(sub: SubState, as_of: datetime, billed_current: bool) -> Step:
    """The step of one subscription at ``as_of`` (see the module rules).

    Trialing and canceled subscriptions bill nothing (the subscription services end
    trials and cancellations at period end). A subscription set to cancel at period end
    is billed for its last period and never rolled over.
    """
    if sub.status in ("trialing", "canceled"):
        return Step(None, None)
    current = Period(sub.period_start, sub.period_end)
    ended = sub.period_end <= as_of

    def roll() -> Period | None:
        if sub.cancel_at_period_end:
            return None
        return following_period(sub.period_end, sub.anchor, sub.interval_months, sub.timezone)

    if sub.arrears:
        if ended and not billed_current:
            return Step(current, roll())
        return Step(None, roll() if ended else None)
    if not billed_current and sub.period_start <= as_of:
        return Step(current, roll() if ended else None)
    if billed_current and ended:
        new = roll()
        if new is None:
            return Step(None, None)
        return Step(new if new.start <= as_of else None, new)
    return Step(None, None)


@dataclass(frozen=True, slots=True)
class Line:
    kind: str  # recurring, usage, discount, proration, correction, milestone
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount_minor: int
    tax_code: str = ""
    revenue_account: str = acct.REVENUE
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class PriceInfo:
    id: int
    label: str
    currency: str
    definition: pricing.PriceDefinition
    metric: str
    tax_code: str
    revenue_account: str
    interval_months: int
    arrears: bool


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    kind: str
    description: str
    amount_minor: int
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass
class Draft:
    billing_account: int
    subscription: int | None
    period: Period | None
    lines: list[Line] = field(default_factory=list)
    pending_ids: list[int] = field(default_factory=list)
    usage_quantity: Decimal | None = None
    discount_used: bool = False

    @property
    def subtotal_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)


_LINE_KIND: Final = {
    "proration_credit": "proration",
    "proration_charge": "proration",
    "usage_correction": "correction",
    "milestone": "milestone",
}


def _unit(amount: Money, quantity: Decimal) -> Decimal:
    if quantity.is_zero():
        return Decimal(0)
    return (amount.amount / quantity).quantize(_SIX)


def _dates(period: Period) -> str:
    last = period.end - timedelta(seconds=1)
    return f"{period.start.date().isoformat()} to {last.date().isoformat()}"


def charge_lines(
    price: PriceInfo,
    period: Period,
    quantity: Decimal,
    *,
    usage: Decimal | None,
    discount: pricing.Discount | None,
    discount_index: int,
) -> tuple[list[Line], bool]:
    """The subscription's lines for ``period``: its charge (recurring at ``quantity``, or
    usage at the metered ``usage``) and a discount line; returns (lines, discount used)."""
    metered = bool(price.metric)
    qty = usage if metered and usage is not None else quantity
    amount = pricing.price(price.definition, qty)
    label = f"{price.label}, {_dates(period)}"
    kind = "usage" if metered else "recurring"
    lines = [
        Line(
            kind,
            label[:300],
            qty,
            _unit(amount, qty) if qty else amount.amount,
            amount.to_minor(),
            price.tax_code,
            price.revenue_account,
            period.start,
            period.end,
        )
    ]
    used = False
    if discount is not None and amount.is_positive() and discount.applies_in_period(discount_index):
        if discount.amount_off is None or discount.amount_off.currency == amount.currency:
            off = pricing.discount_amount(amount, discount)
            if off.is_positive():
                lines.append(
                    Line(
                        "discount",
                        f"Discount on {price.label}"[:300],
                        Decimal(1),
                        -off.amount,
                        -off.to_minor(),
                        price.tax_code,
                        price.revenue_account,
                        period.start,
                        period.end,
                    )
                )
        used = True
    return lines, used


def pending_lines(charges: Sequence[Pending], currency_code: str) -> list[Line]:
    lines = []
    for c in charges:
        amount = Money.from_minor(c.amount_minor, currency_code)
        lines.append(
            Line(
                _LINE_KIND.get(c.kind, "manual"),
                c.description[:300],
                Decimal(1),
                amount.amount,
                c.amount_minor,
                "",
                acct.REVENUE,
                c.period_start,
                c.period_end,
            )
        )
    return lines


def price_info(row: Mapping[str, Any]) -> PriceInfo:
    label = row.get("product_name") or row.get("code") or "Subscription"
    if row.get("nickname"):
        label = f"{label} ({row['nickname']})"
    return PriceInfo(
        id=row["price_id"],
        label=label,
        currency=row["currency"],
        definition=definition_from_row(row),
        metric=row["metric"] or "",
        tax_code=row["tax_code"] or "",
        revenue_account=acct.DEFERRED_REVENUE if row["revenue_deferred"] else acct.REVENUE,
        interval_months=row["interval_months"],
        arrears=row["billing_timing"] == "arrears" or bool(row["metric"]),
    )


# --------------------------------------------------------------------------- bulk SQL

_SUBS = """
SELECT s.id, s.billing_account, s.quantity, s.status, s.anchor_day, s.anchor_month,
       s.anchor_year, s.current_period_start,
       s.current_period_end, s.trial_end, s.cancel_at_period_end, s.discount_periods_used,
       s.price AS price_id, p.code, p.nickname, p.currency, p.interval_months, p.model,
       p.definition, p.minimum_minor, p.rounding, p.metric, p.tax_code, p.billing_timing,
       p.revenue_deferred, pr.name AS product_name, b.timezone, b.issuing_entity,
       b.currency AS account_currency,
       d.id AS discount_id, d.kind AS d_kind, d.percent AS d_percent,
       d.amount_minor AS d_amount_minor, d.currency AS d_currency, d.duration AS d_duration,
       d.duration_periods AS d_duration_periods
FROM subscription s
JOIN price p ON p.id = s.price
JOIN product pr ON pr.id = p.product
JOIN billing_account b ON b.id = s.billing_account
LEFT JOIN discount d ON d.id = s.discount
WHERE s.id = ANY($1::bigint[]) AND s.status NOT IN ('canceled', 'trialing')
ORDER BY s.id
FOR UPDATE OF s
"""

_BILLED = """
SELECT bp.subscription FROM billed_period bp
JOIN unnest($1::bigint[], $2::timestamptz[]) AS u(s, p)
  ON bp.subscription = u.s AND bp.period_start = u.p
"""

_PENDING = """
SELECT id, billing_account, kind, description, currency, amount_minor, period_start,
       period_end
FROM pending_charge
WHERE billing_account = ANY($1::bigint[]) AND invoice IS NULL
  AND (kind <> 'milestone' OR triggered_at IS NOT NULL)
ORDER BY id
FOR UPDATE
"""

_ACCOUNTS = """
SELECT id, issuing_entity, currency FROM billing_account WHERE id = ANY($1::bigint[])
"""

_INSERT_INVOICES = """
INSERT INTO invoice (id, billing_account, issuing_entity, status, currency, subtotal_minor,
    tax_minor, total_minor, paid_minor, balance_minor, memo, created_at, created_by,
    document_type, tax_status, approval_status, approved_by, functional_currency,
    fx_source, period_start, period_end)
SELECT i, a, e, 'draft', c, t, 0, t, 0, t, m, $8, $9, 'invoice', 'pending', 'not_required',
    '', '', '', ps, pe
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[],
            $7::timestamptz[], $10::timestamptz[]) AS u(i, a, e, c, t, m, ps, pe)
"""

_INSERT_LINES = """
INSERT INTO invoice_line (invoice, position, description, quantity, unit_price, amount_minor,
    tax_rate, tax_minor, tax_code, kind, revenue_account, period_start, period_end)
SELECT i, n, d, q, up, a, 0, 0, tc, k, ra, ps, pe
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::numeric[], $5::numeric[], $6::bigint[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[])
     AS u(i, n, d, q, up, a, tc, k, ra, ps, pe)
"""

_INSERT_BILLED = """
INSERT INTO billed_period (subscription, period_start, period_end, invoice, run, chunk,
    usage_quantity, usage_cutoff)
SELECT s, ps, pe, i, $5, $6, uq, $8
FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::bigint[],
            $7::numeric[]) AS u(s, ps, pe, i, uq)
"""

_UPDATE_SUBS = """
UPDATE subscription AS s SET
    current_period_start = COALESCE(u.ps, s.current_period_start),
    current_period_end = COALESCE(u.pe, s.current_period_end),
    discount_periods_used = s.discount_periods_used + u.du,
    version = s.version + 1,
    updated_at = $5
FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::int[])
     AS u(id, ps, pe, du)
WHERE s.id = u.id
"""

_UPDATE_PENDING = """
UPDATE pending_charge AS p SET invoice = u.i
FROM unnest($1::bigint[], $2::bigint[]) AS u(id, i) WHERE p.id = u.id
"""


@dataclass(frozen=True, slots=True)
class ChunkResult:
    invoice_ids: list[int]
    skipped: int  # subscriptions with nothing due (already billed, not due yet, canceled)
    invalid: list[int] = field(default_factory=list)  # price currency != account currency


def _discount(row: Mapping[str, Any]) -> pricing.Discount | None:
    if row["discount_id"] is None:
        return None
    return discount_from_row(
        {
            "kind": row["d_kind"],
            "percent": row["d_percent"],
            "amount_minor": row["d_amount_minor"],
            "currency": row["d_currency"],
            "duration": row["d_duration"],
            "duration_periods": row["d_duration_periods"],
        }
    )


async def build_chunk(
    conn: Connection,
    *,
    run_id: int | None,
    chunk: int,
    as_of: datetime,
    now: datetime,
    subscription_ids: Sequence[int],
    account_ids: Sequence[int] = (),
    metrics: Mapping[str, Metric],
    created_by: str,
) -> ChunkResult:
    """Build every due draft of a chunk inside the caller's transaction (``conn``:
    ``core.billing.sql.current()``).

    ``metrics`` maps every metric code the chunk's prices use to its definition.
    """
    rows = await conn.fetch(_SUBS, list(subscription_ids))
    states: dict[int, SubState] = {}
    prices: dict[int, PriceInfo] = {}
    by_sub: dict[int, Any] = {}
    invalid = []
    for r in rows:
        if r["currency"] != r["account_currency"]:
            invalid.append(r["id"])  # never billed in the wrong currency: reported
            continue
        if r["price_id"] not in prices:
            prices[r["price_id"]] = price_info(r)
        info = prices[r["price_id"]]
        by_sub[r["id"]] = r
        states[r["id"]] = SubState(
            r["id"],
            r["billing_account"],
            r["status"],
            r["current_period_start"],
            r["current_period_end"],
            (r["anchor_day"], r["anchor_month"], r["anchor_year"]),
            info.interval_months,
            r["timezone"] or "UTC",
            info.arrears,
            r["cancel_at_period_end"],
        )
    billed = {
        rec["subscription"]
        for rec in await conn.fetch(
            _BILLED, list(states), [s.period_start for s in states.values()]
        )
    }
    # One period per subscription per run: a rerun of the chunk is an exact no-op, even
    # for a subscription that is several periods behind (the next run catches up).
    done_in_run = (
        {
            rec["subscription"]
            for rec in await conn.fetch(
                "SELECT subscription FROM billed_period"
                " WHERE run = $1 AND subscription = ANY($2::bigint[])",
                run_id,
                list(states),
            )
        }
        if run_id is not None
        else set()
    )
    steps: dict[int, Step] = {
        sid: Step(None, None) if sid in done_in_run else plan_step(s, as_of, sid in billed)
        for sid, s in states.items()
    }

    # Usage of every metered period, one query.
    windows = []
    for sid, step in steps.items():
        info = prices[by_sub[sid]["price_id"]]
        if step.bill is not None and info.metric:
            windows.append(
                Window(
                    sid,
                    states[sid].billing_account,
                    metrics[info.metric],
                    step.bill.start,
                    step.bill.end,
                    now,
                )
            )
    usage = await aggregate_windows(conn, windows)

    drafts: list[Draft] = []
    first_of_account: dict[int, Draft] = {}
    sub_updates: list[tuple[int, datetime | None, datetime | None, int]] = []
    for sid, step in steps.items():
        r = by_sub[sid]
        info = prices[r["price_id"]]
        used = False
        if step.bill is not None:
            lines, used = charge_lines(
                info,
                step.bill,
                Decimal(r["quantity"]),
                usage=usage.get(sid),
                discount=_discount(r),
                discount_index=r["discount_periods_used"],
            )
            draft = Draft(
                r["billing_account"],
                sid,
                step.bill,
                lines,
                usage_quantity=usage.get(sid) if info.metric else None,
            )
            drafts.append(draft)
            first_of_account.setdefault(r["billing_account"], draft)
        if step.new_period is not None or step.bill is not None:
            sub_updates.append(
                (
                    sid,
                    step.new_period.start if step.new_period else None,
                    step.new_period.end if step.new_period else None,
                    1 if used else 0,
                )
            )

    # Pending charges of the chunk's accounts (subscriptions billed now, and accounts with
    # billable charges only).
    accounts = sorted({d.billing_account for d in drafts} | set(account_ids))
    pending_rows = await conn.fetch(_PENDING, accounts) if accounts else []
    account_rows = {a["id"]: a for a in await conn.fetch(_ACCOUNTS, accounts)} if accounts else {}
    pending_by_account: dict[int, list[Any]] = {}
    for p in pending_rows:
        pending_by_account.setdefault(p["billing_account"], []).append(p)
    for account, charges in pending_by_account.items():
        currency_code = account_rows[account]["currency"]
        usable = [c for c in charges if c["currency"] == currency_code]
        if not usable:
            continue
        target = first_of_account.get(account)
        if target is None:
            target = Draft(account, None, None)
            drafts.append(target)
            first_of_account[account] = target
        target.lines.extend(
            pending_lines(
                [
                    Pending(
                        c["id"],
                        c["kind"],
                        c["description"],
                        c["amount_minor"],
                        c["period_start"],
                        c["period_end"],
                    )
                    for c in usable
                ],
                currency_code,
            )
        )
        target.pending_ids.extend(c["id"] for c in usable)

    if not drafts:
        if sub_updates:
            await _update_subs(conn, sub_updates, now)
        return ChunkResult([], len(states) + len(account_ids), invalid)

    if conn.sqlite:
        # The chunk's transaction holds SQLite's write lock: the next ids are ours.
        last = await conn.fetchval("SELECT COALESCE(max(id), 0) AS last FROM invoice")
        ids = list(range(int(last) + 1, int(last) + 1 + len(drafts)))
    else:
        ids = [
            rec[0]
            for rec in await conn.fetch(
                "SELECT nextval(pg_get_serial_sequence('invoice', 'id'))"
                " FROM generate_series(1, $1)",
                len(drafts),
            )
        ]
    entity_of = {r["billing_account"]: (r["issuing_entity"], r["account_currency"]) for r in rows}
    for a, rec in account_rows.items():
        entity_of[a] = (rec["issuing_entity"], rec["currency"])
    memo = f"Invoice run {run_id}" if run_id else "Invoice run"
    await conn.execute(
        _INSERT_INVOICES,
        ids,
        [d.billing_account for d in drafts],
        [entity_of[d.billing_account][0] for d in drafts],
        [entity_of[d.billing_account][1] for d in drafts],
        [d.subtotal_minor for d in drafts],
        [memo] * len(drafts),
        [d.period.start if d.period else None for d in drafts],
        now,
        created_by,
        [d.period.end if d.period else None for d in drafts],
    )
    cols: list[list[Any]] = [[] for _ in range(11)]
    for invoice_id, d in zip(ids, drafts, strict=True):
        for n, line in enumerate(d.lines, start=1):
            for col, value in zip(
                cols,
                (
                    invoice_id,
                    n,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.amount_minor,
                    line.tax_code,
                    line.kind,
                    line.revenue_account,
                    line.period_start,
                    line.period_end,
                ),
                strict=True,
            ):
                col.append(value)
    await conn.execute(_INSERT_LINES, *cols)
    billed_drafts = [(i, d) for i, d in zip(ids, drafts, strict=True) if d.subscription]
    await conn.execute(
        _INSERT_BILLED,
        [d.subscription for _, d in billed_drafts],
        [d.period.start for _, d in billed_drafts if d.period],
        [d.period.end for _, d in billed_drafts if d.period],
        [i for i, _ in billed_drafts],
        run_id,
        chunk,
        [d.usage_quantity for _, d in billed_drafts],
        now,
    )
    await _update_subs(conn, sub_updates, now)
    pend = [(pid, i) for i, d in zip(ids, drafts, strict=True) for pid in d.pending_ids]
    if pend:
        await conn.execute(keyed(_UPDATE_PENDING, "p"), [p for p, _ in pend], [i for _, i in pend])
    return ChunkResult(ids, len(states) + len(account_ids) - len(drafts), invalid)


async def _update_subs(
    conn: Connection,
    updates: Sequence[tuple[int, datetime | None, datetime | None, int]],
    now: datetime,
) -> None:
    if not updates:
        return
    await conn.execute(
        keyed(_UPDATE_SUBS, "s"),
        [u[0] for u in updates],
        [u[1] for u in updates],
        [u[2] for u in updates],
        [u[3] for u in updates],
        now,
    )


def items_json(subscriptions: Sequence[int], accounts: Sequence[int]) -> str:
    return json.dumps({"subscriptions": list(subscriptions), "accounts": list(accounts)})
