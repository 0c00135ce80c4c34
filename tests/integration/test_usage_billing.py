"""Usage billing against PostgreSQL: the SQL aggregation agrees with the pure rules; the
reconciliation window puts late events on the draft, on a correction of the next invoice,
or holds them for staff review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.audit.tables import AuditEvent
from core.billing import reconciliation, runs
from core.billing.metrics import Event, Metric, aggregate, in_period
from core.billing.run_tables import BilledPeriod, LateUsage
from core.billing.tables import PendingCharge
from core.billing.usage_queries import Window, aggregate_windows
from core.db import engine
from core.errors import Conflict
from core.invoicing.tables import Invoice, InvoiceLine
from core.usage.tables import UsageEvent
from tests.integration.billing_runs_support import (
    FEB,
    MAR,
    NOW,
    accounts,
    assert_books_balance,
    event,
    metric,
    price,
    subscription,
)
from tests.integration.factories import SYSTEM


async def test_sql_aggregation_matches_the_pure_rules(db) -> None:
    [acct] = await accounts("AGG-1")
    rows = [
        ("api", "3", FEB + timedelta(days=1), {"region": "eu", "user": "a", "tier": 2}),
        ("api", "5.5", FEB + timedelta(days=2), {"region": "us", "user": "b"}),
        ("api", "1", FEB + timedelta(days=3), {"region": "eu", "user": "a", "tier": "2"}),
        ("api", "8", FEB + timedelta(days=3), {"region": "eu", "user": "c", "ok": True}),
        ("api", "2", MAR + timedelta(days=1), {"region": "eu", "user": "d"}),  # next period
        ("storage", "40", FEB + timedelta(days=9), {}),
        ("storage", "25", FEB + timedelta(days=20), {}),
    ]
    pure = []
    for name, q, at, props in rows:
        eid = await event(acct, name, q, at, props=props)
        pure.append(Event(name, Decimal(q), at, props, eid))
    cases = [
        Metric("a", "api", "sum"),
        Metric("b", "api", "sum", filters={"region": "eu"}),
        Metric("c", "api", "count", filters={"tier": "2"}),
        Metric("d", "api", "max"),
        Metric("e", "api", "unique_count", property="user"),
        Metric("f", "api", "unique_count", property="user", filters={"region": "eu"}),
        Metric("g", "storage", "last"),
        Metric("h", "api", "last", filters={"ok": "true"}),
        Metric("i", "none", "last"),
    ]
    windows = [Window(i, acct, m, FEB, MAR, NOW) for i, m in enumerate(cases)]
    async with engine().transaction():
        conn = engine().current_transaction.get().connection
        found = await aggregate_windows(conn, windows)
        # A cutoff before the events were received counts nothing.
        early = await aggregate_windows(conn, [Window(0, acct, cases[0], FEB, MAR, FEB)])
        # The embedded (SQLite) path computes the same through Piccolo and the pure rules.
        from core.billing.usage_queries import _SqliteConn

        portable = await aggregate_windows(_SqliteConn(), windows)
    assert portable == found
    february = in_period(pure, FEB, MAR)
    assert {i: found[i] for i in range(len(cases))} == {
        i: aggregate(m, february) for i, m in enumerate(cases)
    }
    assert found[0] == Decimal("17.5")
    assert found[4] == 3
    assert found[6] == 25
    assert early[0] == 0


async def _bill_drafts_only(monkeypatch: pytest.MonkeyPatch, as_of: datetime) -> None:
    async def no_finalize(ids, actor):
        return {}

    with monkeypatch.context() as m:
        m.setattr(runs, "_finalize", no_finalize)
        plan = await runs.start_run(as_of, SYSTEM, trigger="test")
        for n in plan.chunks:
            await runs.process_chunk(plan.run_id, n, clock=as_of)


async def test_reconciliation_window(db, monkeypatch) -> None:
    [acct] = await accounts("LATE-1")
    await metric("calls", "api", "sum")
    # 0.10 per call up to 100, then 0.05; minimum 1.00
    calls = await price(
        "graduated",
        {
            "tiers": [
                {"up_to": "100", "unit_amount": "0.10"},
                {"up_to": None, "unit_amount": "0.05"},
            ]
        },
        metric="calls",
        minimum_minor=100,
    )
    sub = await subscription(acct, calls, start=FEB, end=MAR)
    await event(acct, "api", "90", FEB + timedelta(days=3))
    await _bill_drafts_only(monkeypatch, NOW)
    [bp] = await BilledPeriod.select()
    assert bp["usage_quantity"] == 90

    # 1. Within the window, invoice still a draft: the usage line is recomputed.
    late1 = await event(
        acct, "api", "20", FEB + timedelta(days=27), received=MAR + timedelta(hours=7)
    )
    report = await reconciliation.reconcile(MAR + timedelta(hours=8), SYSTEM)
    assert (report.applied, report.corrected, report.held) == (1, 0, 0)
    line = await InvoiceLine.select().where(InvoiceLine.invoice == bp["invoice"]).first()
    assert (line["quantity"], line["amount_minor"]) == (110, 1050)  # 10.00 + 0.50
    inv = await Invoice.select().where(Invoice.id == bp["invoice"]).first()
    assert (inv["status"], inv["subtotal_minor"], inv["total_minor"]) == ("draft", 1050, 1050)
    # A second pass finds nothing new.
    again = await reconciliation.reconcile(MAR + timedelta(hours=9), SYSTEM)
    assert (again.applied, again.corrected, again.held) == (0, 0, 0)

    # 2. Finalized, then another late event within the window: a correction for the next
    # invoice (the price of the new quantity minus the billed one).
    held = await runs._finalize([bp["invoice"]], SYSTEM)
    assert held == {}
    await event(acct, "api", "30", FEB + timedelta(days=27), received=MAR + timedelta(hours=30))
    report = await reconciliation.reconcile(MAR + timedelta(hours=31), SYSTEM)
    assert (report.applied, report.corrected) == (0, 1)
    [correction] = await PendingCharge.select().where(PendingCharge.kind == "usage_correction")
    assert correction["amount_minor"] == 150  # 140 calls: 12.00 vs 10.50
    assert correction["subscription"] == sub
    assert "110 -> 140" in correction["description"]

    # 3. Beyond the window: held; staff release one (corrected) and discard another.
    keep = await event(acct, "api", "10", FEB + timedelta(days=5), received=MAR + timedelta(days=3))
    drop = await event(
        acct, "api", "500", FEB + timedelta(days=6), received=MAR + timedelta(days=3)
    )
    report = await reconciliation.reconcile(MAR + timedelta(days=3, hours=1), SYSTEM)
    assert report.held == 2
    listed = await reconciliation.held_events()
    assert {r["usage_event"] for r in listed} == {keep, drop}
    by_event = {r["usage_event"]: r["id"] for r in listed}
    assert await reconciliation.review(by_event[keep], "release", SYSTEM) == "released"
    assert await reconciliation.review(by_event[drop], "discard", SYSTEM) == "discarded"
    with pytest.raises(Conflict):
        await reconciliation.review(by_event[drop], "release", SYSTEM)
    charges = await PendingCharge.select().where(PendingCharge.kind == "usage_correction")
    assert sorted(c["amount_minor"] for c in charges) == [50, 150]  # 150 calls: 12.50
    actions = {r["action"] for r in await AuditEvent.select(AuditEvent.action)}
    assert {"usage.late_released", "usage.late_discarded", "usage.correction_created"} <= actions
    statuses = {r["usage_event"]: r["status"] for r in await LateUsage.select()}
    assert statuses[late1] == "applied"
    assert statuses[drop] == "discarded"

    # The next run bills March (usage 0 -> the 1.00 minimum) with both corrections.
    april = datetime(2026, 4, 1, 6, tzinfo=UTC)
    plan = await runs.start_run(april, SYSTEM, trigger="test")
    for n in plan.chunks:
        await runs.process_chunk(plan.run_id, n)
    bps = await BilledPeriod.select().order_by(BilledPeriod.period_start)
    lines = (
        await InvoiceLine.select(InvoiceLine.kind, InvoiceLine.amount_minor)
        .where(InvoiceLine.invoice == bps[1]["invoice"])
        .order_by(InvoiceLine.position)
    )
    assert [(x["kind"], x["amount_minor"]) for x in lines] == [
        ("usage", 100),
        ("correction", 150),
        ("correction", 50),
    ]
    assert await UsageEvent.count() == 5
    await assert_books_balance()
