"""The reconciliation window: usage events that arrive after their period was billed.

Rules
-----
* A billed metered period remembers the quantity it billed and the instant up to which
  received events were counted (``BilledPeriod.usage_quantity`` / ``usage_cutoff``). An
  event of that period received later is **late**.
* Late events received within the window (default 48 hours after the period's end):
  - the period's invoice is still a draft: its usage line is recomputed (quantity and
    amount, rounded once) and the invoice totals follow (``applied``);
  - the invoice is already finalized: the difference between the price of the new
    quantity and the price of the billed one becomes a ``usage_correction`` pending
    charge, billed on the account's next invoice (``corrected``).
  The quantity is always recomputed over all the period's counted events, so sums, maxima,
  unique counts and last values are all corrected exactly, and tiers and minimums apply
  to the whole period.
* Later events are ``held``: they count nowhere until staff release them (then they are
  corrected like the above, whatever the window) or discard them. Both are audited.
* Events received in the last minute are left for the next pass (a commit racing the
  pass can never be skipped).

Runs on PostgreSQL and on the embedded SQLite database (statements through
``core.billing.sql``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from core.audit.log import Actor, AuditRecord, record
from core.billing import sql
from core.billing.run_tables import LateUsage
from core.billing.usage_queries import Window, aggregate_windows, metrics_by_code
from core.catalog import pricing
from core.catalog.price_book import definition_from_row
from core.db import for_update, transaction
from core.errors import Conflict, NotFound

DEFAULT_WINDOW: Final = timedelta(hours=48)
SAFETY_LAG: Final = timedelta(minutes=1)

_LATE = """
SELECT e.id, e.billing_account, e.metric, e.quantity, e.occurred_at, e.received_at,
       bp.id AS bp
FROM billed_period bp
JOIN subscription s ON s.id = bp.subscription
JOIN price p ON p.id = s.price AND p.metric <> ''
LEFT JOIN billable_metric m ON m.code = p.metric
JOIN usage_event e ON e.billing_account = s.billing_account
     AND e.metric = COALESCE(m.event_name, p.metric)
     AND e.occurred_at >= bp.period_start AND e.occurred_at < bp.period_end
     AND e.received_at > bp.usage_cutoff AND e.received_at <= $1
WHERE bp.usage_quantity IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM late_usage lu WHERE lu.usage_event = e.id)
ORDER BY bp.id, e.id
"""

_PERIOD = """
SELECT bp.id, bp.subscription, bp.period_start, bp.period_end, bp.invoice, bp.usage_quantity,
       bp.usage_cutoff, s.billing_account, s.price AS price_id, p.metric, p.model,
       p.definition, p.currency, p.minimum_minor, p.rounding, p.nickname,
       i.status AS invoice_status, i.number AS invoice_number
FROM billed_period bp
JOIN subscription s ON s.id = bp.subscription
JOIN price p ON p.id = s.price
JOIN invoice i ON i.id = bp.invoice
WHERE bp.id = $1
FOR UPDATE OF bp
"""


@dataclass
class ReconcileReport:
    applied: int = 0
    corrected: int = 0
    held: int = 0


async def _requantify(conn: sql.Connection, period: dict[str, Any], cutoff: datetime) -> Decimal:
    metrics = await metrics_by_code([period["metric"]])
    found = await aggregate_windows(
        conn,
        [
            Window(
                1,
                period["billing_account"],
                metrics[period["metric"]],
                period["period_start"],
                period["period_end"],
                cutoff,
            )
        ],
    )
    return found.get(1, Decimal(0))


async def _apply(
    conn: sql.Connection, period: dict[str, Any], cutoff: datetime, actor: Actor, now: datetime
) -> tuple[str, int | None]:
    """Recount the period up to ``cutoff``; returns (status for its late events, pending
    charge id)."""
    definition = definition_from_row(period)
    old_qty = Decimal(period["usage_quantity"])
    new_qty = await _requantify(conn, period, cutoff)
    new_amount = pricing.price(definition, new_qty)
    await conn.execute(
        "UPDATE billed_period SET usage_quantity = $2, usage_cutoff = $3 WHERE id = $1",
        period["id"],
        new_qty,
        cutoff,
    )
    if period["invoice_status"] == "draft":
        unit = (new_amount.amount / new_qty).quantize(Decimal("0.000001")) if new_qty else 0
        await conn.execute(
            "UPDATE invoice_line SET quantity = $2, unit_price = $3, amount_minor = $4"
            " WHERE invoice = $1 AND kind = 'usage' AND period_start = $5",
            period["invoice"],
            new_qty,
            unit,
            new_amount.to_minor(),
            period["period_start"],
        )
        await conn.execute(
            "UPDATE invoice AS i SET subtotal_minor = t.s, total_minor = t.s + i.tax_minor,"
            " balance_minor = t.s + i.tax_minor - i.paid_minor"
            " FROM (SELECT COALESCE(sum(amount_minor), 0) AS s FROM invoice_line"
            "       WHERE invoice = $1) AS t WHERE i.id = $1",
            period["invoice"],
        )
        await record(
            AuditRecord(
                actor,
                "invoice.usage_reconciled",
                "invoice",
                period["invoice"],
                data={"from": str(old_qty), "to": str(new_qty)},
            )
        )
        return "applied", None
    delta = new_amount - pricing.price(definition, old_qty)
    if delta.is_zero():
        return "corrected", None
    label = period["nickname"] or period["metric"]
    row = await conn.fetchrow(
        "INSERT INTO pending_charge (billing_account, subscription, kind, description, currency,"
        " amount_minor, period_start, period_end, trigger, created_at)"
        " VALUES ($1, $2, 'usage_correction', $3, $4, $5, $6, $7, '', $8) RETURNING id",
        period["billing_account"],
        period["subscription"],
        f"Usage correction for {label}, {period['period_start'].date().isoformat()} to "
        f"{(period['period_end'] - timedelta(seconds=1)).date().isoformat()} "
        f"(invoice {period['invoice_number']}: {old_qty.normalize():f} -> "
        f"{new_qty.normalize():f})",
        period["currency"],
        delta.to_minor(),
        period["period_start"],
        period["period_end"],
        now,
    )
    await record(
        AuditRecord(
            actor,
            "usage.correction_created",
            "pending_charge",
            row["id"],
            data={"invoice": period["invoice"], "amount": delta.to_minor()},
        )
    )
    return "corrected", int(row["id"])


async def reconcile(
    now: datetime, actor: Actor, *, window: timedelta = DEFAULT_WINDOW
) -> ReconcileReport:
    """One pass over late events; each billed period in its own transaction."""
    report = ReconcileReport()
    cutoff = now - SAFETY_LAG
    async with transaction():
        late = [dict(r) for r in await sql.current().fetch(_LATE, cutoff)]
    by_period: dict[int, list[dict[str, Any]]] = {}
    for event in late:
        by_period.setdefault(event["bp"], []).append(event)
    for bp_id, events in by_period.items():
        async with transaction():
            conn = sql.current()
            period = dict(await conn.fetchrow(_PERIOD, bp_id))
            limit = period["period_end"] + window
            inside = [e for e in events if e["received_at"] <= limit]
            beyond = [e for e in events if e["received_at"] > limit]
            await _insert_late(conn, beyond, "held", None, now)
            report.held += len(beyond)
            if inside:
                status, charge = await _apply(conn, period, cutoff, actor, now)
                await _insert_late(conn, inside, status, charge, now)
                if status == "applied":
                    report.applied += len(inside)
                else:
                    report.corrected += len(inside)
            elif beyond:
                # Nothing to count now, but the held ones must not be found again
                # (the period row is locked: its cutoff can only move forward here).
                await conn.execute(
                    "UPDATE billed_period SET usage_cutoff = $2 WHERE id = $1",
                    bp_id,
                    max(period["usage_cutoff"], *(e["received_at"] for e in beyond)),
                )
    return report


async def _insert_late(
    conn: sql.Connection,
    events: list[dict[str, Any]],
    status: str,
    charge: int | None,
    now: datetime,
) -> None:
    if not events:
        return
    await conn.execute(
        "INSERT INTO late_usage (usage_event, billing_account, billed_period, metric, quantity,"
        " occurred_at, received_at, status, pending_charge, reviewed_by, created_at)"
        " SELECT e, a, b, m, q, o, r, $8, $9, '', $10"
        " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::numeric[],"
        " $6::timestamptz[], $7::timestamptz[]) AS u(e, a, b, m, q, o, r)"
        " WHERE true ON CONFLICT (usage_event) DO NOTHING",
        [e["id"] for e in events],
        [e["billing_account"] for e in events],
        [e["bp"] for e in events],
        [e["metric"] for e in events],
        [e["quantity"] for e in events],
        [e["occurred_at"] for e in events],
        [e["received_at"] for e in events],
        status,
        charge,
        now,
    )


async def review(late_id: int, decision: str, actor: Actor) -> str:
    """Staff decision on a held event: ``release`` (billed as a correction) or
    ``discard``. Returns the new status."""
    if decision not in ("release", "discard"):
        raise Conflict("decide release or discard")
    now = datetime.now(UTC)
    async with transaction():
        row = await for_update(LateUsage.select().where(LateUsage.id == late_id)).first()
        if row is None:
            raise NotFound("late usage event")
        if row["status"] != "held":
            raise Conflict(f"this event was already {row['status']}")
        charge = None
        status = "discarded"
        if decision == "release":
            await LateUsage.update({LateUsage.status: "released"}).where(LateUsage.id == late_id)
            conn = sql.current()
            period = dict(await conn.fetchrow(_PERIOD, row["billed_period"]))
            cutoff = max(period["usage_cutoff"], row["received_at"])
            _, charge = await _apply(conn, period, cutoff, actor, now)
            status = "released"
        await LateUsage.update(
            {
                LateUsage.status: status,
                LateUsage.pending_charge: charge,
                LateUsage.reviewed_by: f"{actor.type}:{actor.id}"[:64],
                LateUsage.reviewed_at: now,
            }
        ).where(LateUsage.id == late_id)
        await record(
            AuditRecord(
                actor,
                f"usage.late_{status}",
                "late_usage",
                late_id,
                data={"usage_event": row["usage_event"], "quantity": str(row["quantity"])},
            )
        )
    return status


async def held_events(limit: int = 200) -> list[dict[str, Any]]:
    return (
        await LateUsage.select(
            LateUsage.all_columns(),
            LateUsage.billing_account.code.as_alias("account_code"),
            LateUsage.billed_period.period_start.as_alias("period_start"),
            LateUsage.billed_period.period_end.as_alias("period_end"),
        )
        .where(LateUsage.status == "held")
        .order_by(LateUsage.id)
        .limit(limit)
    )
