"""Subscription services against PostgreSQL: create, preview == confirm, conflicts,
cancellations, reactivation, trials, past due, and concurrent changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from core.audit.tables import AuditEvent
from core.billing import subscriptions as subs
from core.billing.run_tables import BilledPeriod
from core.billing.subscriptions import Request
from core.billing.tables import PendingCharge, Subscription, SubscriptionChange
from core.catalog import services as catalog
from core.catalog.tables import Price
from core.errors import Conflict, NotFound, ValidationFailed
from core.invoicing.services import create_draft
from core.ledger.tables import JournalEntry
from tests.integration.factories import SYSTEM, billing_account, lines


async def price(product: int, code: str, **fields: str) -> int:
    form = {"code": code, "currency": "USD", "interval_months": "1", "model": "flat"} | fields
    return await catalog.create_price(product, form, SYSTEM)


@pytest.fixture
async def world(db) -> dict[str, Any]:
    account = await billing_account("USD", code="SUBS-1")
    product = await catalog.create_product({"code": "pro", "name": "Pro plan"}, SYSTEM)
    return {
        "account": account,
        "basic": await price(product, "basic-m", amount="30.00", nickname="Basic"),
        "pro": await price(product, "pro-m", amount="90.00", nickname="Pro"),
        "seats": await price(
            product, "seat-m", model="per_unit", unit_amount="12.50", nickname="Seats"
        ),
        "annual": await price(
            product, "pro-y", amount="1200.00", interval_months="12", nickname="Pro annual"
        ),
        "trial": await price(product, "trial-m", amount="50.00", trial_days="14"),
        "eur": await price(product, "pro-eur", amount="80.00", currency="EUR"),
    }


async def row(sub_id: int) -> dict[str, Any]:
    found = await Subscription.select().where(Subscription.id == sub_id).first()
    assert found is not None
    return found


async def pending(sub_id: int) -> list[dict[str, Any]]:
    return (
        await PendingCharge.select()
        .where(PendingCharge.subscription == sub_id)
        .order_by(PendingCharge.id)
    )


async def test_create_starts_a_full_period_on_its_own_anchor(world) -> None:
    sub_id = await subs.create(world["account"], world["basic"], Decimal(1), SYSTEM)
    sub = await row(sub_id)
    today = datetime.now(UTC).date()
    assert sub["status"] == "active"
    assert sub["anchor_day"] == today.day
    assert sub["current_period_start"] == datetime(today.year, today.month, today.day, tzinfo=UTC)
    assert sub["version"] == 1
    assert await pending(sub_id) == []  # started on its anchor: the run bills the period
    [change] = await SubscriptionChange.select().where(SubscriptionChange.subscription == sub_id)
    assert change["kind"] == "create"


async def test_create_off_anchor_credits_the_days_before_the_start(world) -> None:
    sub_id = await subs.create(
        world["account"],
        world["basic"],
        Decimal(1),
        SYSTEM,
        start_date=date(2026, 4, 16),
        anchor_day=1,
    )
    sub = await row(sub_id)
    assert sub["current_period_start"] == datetime(2026, 4, 1, tzinfo=UTC)
    assert sub["current_period_end"] == datetime(2026, 5, 1, tzinfo=UTC)
    [credit] = await pending(sub_id)
    assert (credit["kind"], credit["amount_minor"]) == ("proration_credit", -1500)
    assert credit["period_end"] == datetime(2026, 4, 16, tzinfo=UTC)


async def test_bad_input_changes_nothing(world) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await subs.create(world["account"], world["eur"], Decimal(1), SYSTEM, anchor_day=40)
    assert set(caught.value.errors) == {"price", "anchor_day"}
    assert await Subscription.count() == 0
    with pytest.raises(ValidationFailed) as bad_price:
        await catalog.create_price(
            1, {"code": "x", "currency": "USD", "model": "graduated", "tiers": "* 1\n9 2"}, SYSTEM
        )
    assert set(bad_price.value.errors) == {"interval_months", "tiers"}
    assert await Price.count() == 6


CASES = [
    ("upgrade", "basic", 1, Request("change", "pro", Decimal(1))),
    ("downgrade", "pro", 1, Request("change", "basic", Decimal(1))),
    ("more seats", "seats", 5, Request("change", "seats", Decimal(8))),
    ("annual to monthly", "annual", 1, Request("change", "pro", Decimal(1))),
    ("cancel now", "pro", 1, Request("cancel_now")),
]


@pytest.mark.parametrize(("name", "start", "qty", "req"), CASES, ids=[c[0] for c in CASES])
async def test_confirm_records_exactly_the_preview(world, name, start, qty, req) -> None:
    sub_id = await subs.create(world["account"], world[start], Decimal(qty), SYSTEM)
    if req.price_id is not None:
        req = Request(req.action, world[req.price_id], req.quantity)
    at = subs.now() - timedelta(seconds=1)
    shown = await subs.preview(sub_id, req, at=at)
    assert shown.version == 1
    assert shown.preview.lines, "every case here bills something"
    done = await subs.confirm(sub_id, req, expected_version=1, at=at, actor=SYSTEM)
    assert done.version == 2
    assert done.preview == shown.preview
    recorded = await pending(sub_id)
    assert [
        (p["kind"], p["amount_minor"], p["period_start"], p["period_end"]) for p in recorded
    ] == [
        (line.kind, line.amount.to_minor(), line.period_start, line.period_end)
        for line in shown.preview.lines
    ]
    assert all(p["subscription_change"] == done.change_id for p in recorded)
    change = (
        await SubscriptionChange.select().where(SubscriptionChange.id == done.change_id).first()
    )
    assert change["credit_minor"] + change["charge_minor"] == shown.preview.net.to_minor()
    sub = await row(sub_id)
    assert sub["version"] == 2
    if req.action == "change":
        assert (sub["price"], sub["quantity"]) == (req.price_id, req.quantity)
    else:
        assert sub["status"] == "canceled"
    if name == "annual to monthly":
        assert sub["current_period_end"] - sub["current_period_start"] <= timedelta(days=31)
    event = (
        await AuditEvent.select()
        .where(AuditEvent.object_type == "subscription")
        .order_by(AuditEvent.id, ascending=False)
        .first()
    )
    assert event["action"] == f"subscription.{done.preview.kind}"
    assert await JournalEntry.count() == 0  # nothing posts until the run invoices it


async def test_stale_or_expired_previews_are_conflicts_and_change_nothing(world) -> None:
    sub_id = await subs.create(world["account"], world["basic"], Decimal(1), SYSTEM)
    req = Request("change", world["pro"], Decimal(1))
    with pytest.raises(Conflict, match="expired"):
        await subs.confirm(
            sub_id, req, expected_version=1, at=subs.now() - timedelta(hours=1), actor=SYSTEM
        )
    with pytest.raises(Conflict, match="changed by someone else"):
        await subs.confirm(sub_id, req, expected_version=7, at=subs.now(), actor=SYSTEM)
    sub = await row(sub_id)
    assert (sub["price"], sub["version"]) == (world["basic"], 1)
    assert await pending(sub_id) == []
    with pytest.raises(ValidationFailed, match="current plan"):
        await subs.preview(sub_id, Request("change", world["basic"], Decimal(1)))
    with pytest.raises(ValidationFailed, match="in USD"):
        await subs.preview(sub_id, Request("change", world["eur"], Decimal(1)))
    with pytest.raises(NotFound):
        await subs.preview(sub_id, req, account_ids={-1})


async def test_cancel_at_period_end_then_reactivate_then_restart(world) -> None:
    sub_id = await subs.create(world["account"], world["pro"], Decimal(1), SYSTEM)
    at = subs.now()
    await subs.confirm(
        sub_id, Request("cancel_at_period_end"), expected_version=1, at=at, actor=SYSTEM
    )
    assert (await row(sub_id))["cancel_at_period_end"] is True
    await subs.confirm(sub_id, Request("reactivate"), expected_version=2, at=at, actor=SYSTEM)
    assert (await row(sub_id))["cancel_at_period_end"] is False
    await subs.confirm(
        sub_id, Request("cancel_at_period_end"), expected_version=3, at=at, actor=SYSTEM
    )
    end = (await row(sub_id))["current_period_end"]
    assert not await subs.end_at_period_end(sub_id, SYSTEM, clock=end - timedelta(seconds=1))
    assert sub_id in await subs.due_cancellations(end)
    assert await subs.end_at_period_end(sub_id, SYSTEM, clock=end)
    assert not await subs.end_at_period_end(sub_id, SYSTEM, clock=end)  # idempotent
    sub = await row(sub_id)
    assert (sub["status"], sub["canceled_at"]) == ("canceled", end)
    assert await pending(sub_id) == []  # cancel at period end credits nothing
    with pytest.raises(Conflict, match="reactivate"):
        await subs.preview(sub_id, Request("change", world["basic"], Decimal(1)))
    later = end + timedelta(days=3, hours=5)
    restart = await subs.confirm(
        sub_id, Request("reactivate"), expected_version=5, at=later, actor=SYSTEM, clock=later
    )
    sub = await row(sub_id)
    assert sub["status"] == "active"
    assert sub["current_period_start"] <= later < sub["current_period_end"]
    [credit] = await pending(sub_id)
    assert credit["amount_minor"] == restart.preview.net.to_minor() < 0


async def test_trial_then_first_period(world) -> None:
    sub_id = await subs.create(
        world["account"], world["trial"], Decimal(1), SYSTEM, start_date=date(2026, 3, 1)
    )
    sub = await row(sub_id)
    assert sub["status"] == "trialing"
    assert sub["trial_end"] == datetime(2026, 3, 15, tzinfo=UTC)
    assert sub["current_period_end"] == sub["trial_end"]
    assert await subs.due_trials(datetime(2026, 3, 14, tzinfo=UTC)) == []
    assert await subs.end_trial(sub_id, SYSTEM, clock=datetime(2026, 3, 15, 1, tzinfo=UTC))
    sub = await row(sub_id)
    assert sub["status"] == "active"
    assert (sub["current_period_start"], sub["current_period_end"]) == (
        datetime(2026, 3, 15, tzinfo=UTC),
        datetime(2026, 4, 15, tzinfo=UTC),
    )
    assert await pending(sub_id) == []


async def test_past_due_set_and_cleared(world) -> None:
    sub_id = await subs.create(world["account"], world["pro"], Decimal(1), SYSTEM)
    assert await subs.set_past_due(sub_id, True, SYSTEM, reason="invoice_overdue")
    assert not await subs.set_past_due(sub_id, True, SYSTEM)
    assert (await row(sub_id))["status"] == "past_due"
    assert await subs.set_past_due(sub_id, False, SYSTEM)
    sub = await row(sub_id)
    assert (sub["status"], sub["version"]) == ("active", 3)


async def test_concurrent_changes_apply_one_and_refuse_the_other(world) -> None:
    """Two confirmations on the same version at once, on separate pool connections: one
    applies, the other is a Conflict; the row, history and pending charges are the
    winner's alone. Repeated to give the race several chances."""
    for _ in range(5):
        sub_id = await subs.create(world["account"], world["basic"], Decimal(1), SYSTEM)
        at = subs.now()
        a = Request("change", world["pro"], Decimal(1))
        b = Request("change", world["seats"], Decimal(4))
        results = await asyncio.gather(
            subs.confirm(sub_id, a, expected_version=1, at=at, actor=SYSTEM),
            subs.confirm(sub_id, b, expected_version=1, at=at, actor=SYSTEM),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, subs.ChangeResult)]
        lost = [r for r in results if isinstance(r, Conflict)]
        assert len(won) == 1, results
        assert len(lost) == 1, results
        winner = a if results[0] is won[0] else b
        sub = await row(sub_id)
        assert (sub["price"], sub["quantity"], sub["version"]) == (
            winner.price_id,
            winner.quantity,
            2,
        )
        changes = await SubscriptionChange.select().where(SubscriptionChange.subscription == sub_id)
        assert sorted(c["kind"] for c in changes) == ["change_price", "create"]
        charges = await pending(sub_id)
        assert {c["subscription_change"] for c in charges} == {won[0].change_id}
        assert sum(c["amount_minor"] for c in charges) == won[0].preview.net.to_minor()


async def test_a_billed_period_is_credited_and_billing_in_between_is_a_conflict(world) -> None:
    """Once the run has invoiced the current period, a change credits its unused part and
    charges the rest at the new plan; a preview computed before that invoice no longer
    matches and its confirmation is refused."""
    sub_id = await subs.create(world["account"], world["basic"], Decimal(1), SYSTEM)
    req = Request("change", world["pro"], Decimal(1))
    at = subs.now()
    before = await subs.preview(sub_id, req, at=at)
    assert before.billed is False
    assert [line.kind for line in before.preview.lines] == [
        "proration_charge",  # used time on Basic (the run will bill Pro for the period)
        "proration_credit",
    ]
    sub = await row(sub_id)
    invoice = await create_draft(world["account"], lines("30.00", rate="0"), SYSTEM)
    await BilledPeriod.insert(
        BilledPeriod(
            subscription=sub_id,
            period_start=sub["current_period_start"],
            period_end=sub["current_period_end"],
            invoice=invoice,
            usage_cutoff=at,
        )
    )
    with pytest.raises(Conflict, match="invoice for this period was issued"):
        await subs.confirm(
            sub_id, req, expected_version=1, expected_billed=False, at=at, actor=SYSTEM
        )
    assert await pending(sub_id) == []
    after = await subs.preview(sub_id, req, at=at)
    assert after.billed is True
    credit, charge = after.preview.lines
    assert (credit.kind, charge.kind) == ("proration_credit", "proration_charge")
    assert (credit.period_start, credit.period_end) == (at, sub["current_period_end"])
    # the charge is three times the credit (90 vs 30 over the same remainder), to a cent
    assert abs(charge.amount.to_minor() + 3 * credit.amount.to_minor()) <= 2
    done = await subs.confirm(
        sub_id, req, expected_version=1, expected_billed=True, at=at, actor=SYSTEM
    )
    assert done.preview == after.preview


async def test_lifecycle_job_ends_trials_and_period_end_cancellations_once(world) -> None:
    trial = await subs.create(
        world["account"], world["trial"], Decimal(1), SYSTEM, start_date=date(2026, 3, 1)
    )
    ending = await subs.create(
        world["account"], world["pro"], Decimal(1), SYSTEM, start_date=date(2026, 3, 1)
    )
    await subs.confirm(
        ending,
        Request("cancel_at_period_end"),
        expected_version=1,
        at=datetime(2026, 3, 5, tzinfo=UTC),
        clock=datetime(2026, 3, 5, tzinfo=UTC),
        actor=SYSTEM,
    )
    clock = datetime(2026, 4, 2, tzinfo=UTC)
    report = await subs.run_lifecycle(SYSTEM, clock)
    assert (report.trials_ended, report.canceled) == (1, 1)
    assert (await row(trial))["status"] == "active"
    assert (await row(ending))["status"] == "canceled"
    again = await subs.run_lifecycle(SYSTEM, clock)
    assert (again.trials_ended, again.canceled) == (0, 0)


async def test_cancel_and_restart_within_an_invoiced_period_net_to_zero(world) -> None:
    sub_id = await subs.create(world["account"], world["pro"], Decimal(1), SYSTEM)
    sub = await row(sub_id)
    invoice = await create_draft(world["account"], lines("90.00", rate="0"), SYSTEM)
    await BilledPeriod.insert(
        BilledPeriod(
            subscription=sub_id,
            period_start=sub["current_period_start"],
            period_end=sub["current_period_end"],
            invoice=invoice,
            usage_cutoff=subs.now(),
        )
    )
    at = subs.now()
    cancel = await subs.confirm(
        sub_id, Request("cancel_now"), expected_version=1, at=at, actor=SYSTEM
    )
    restart = await subs.confirm(
        sub_id, Request("reactivate"), expected_version=2, at=at, actor=SYSTEM
    )
    assert restart.preview.kind == "restart"
    assert [line.kind for line in restart.preview.lines] == ["proration_charge"]
    assert cancel.preview.net + restart.preview.net == restart.preview.net.zero("USD")
    assert sum(p["amount_minor"] for p in await pending(sub_id)) == 0
    after = await row(sub_id)
    assert (after["status"], after["current_period_start"]) == (
        "active",
        sub["current_period_start"],
    )
