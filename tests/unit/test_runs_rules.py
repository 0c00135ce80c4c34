"""Invoice-run planning rules (pure): which period is billed, how periods roll, and
that daily runs bill every period exactly once, without gaps or overlaps."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from core.billing.invoice_builder import (
    PriceInfo,
    SubState,
    charge_lines,
    following_period,
    plan_step,
)
from core.billing.periods import Period
from core.catalog import pricing
from core.money import Money

FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)


def sub(arrears: bool, **kw: object) -> SubState:
    values = {
        "id": 1,
        "billing_account": 1,
        "status": "active",
        "period_start": FEB,
        "period_end": MAR,
        "anchor": (1, 2, 2026),
        "interval_months": 1,
        "timezone": "UTC",
        "arrears": arrears,
    }
    values.update(kw)
    return SubState(**values)  # type: ignore[arg-type]


def test_examples() -> None:
    mid = FEB + timedelta(days=10)
    assert plan_step(sub(True), mid, False).bill is None
    step = plan_step(sub(True), MAR, False)
    assert step.bill == Period(FEB, MAR)
    assert step.new_period == Period(MAR, datetime(2026, 4, 1, tzinfo=UTC))
    assert plan_step(sub(False), mid, False).bill == Period(FEB, MAR)
    assert plan_step(sub(False), mid, True).bill is None
    after = plan_step(sub(False), MAR, True)
    assert after.bill == after.new_period == Period(MAR, datetime(2026, 4, 1, tzinfo=UTC))
    assert plan_step(sub(False, status="trialing"), MAR, False).bill is None
    last = plan_step(sub(True, cancel_at_period_end=True), MAR, False)
    assert (last.bill, last.new_period) == (Period(FEB, MAR), None)
    assert plan_step(sub(False, cancel_at_period_end=True), MAR, True).bill is None


@settings(max_examples=40, deadline=None)
@given(
    arrears=st.booleans(),
    day=st.integers(1, 31),
    months=st.sampled_from([1, 3, 12]),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    step_days=st.integers(1, 20),
)
def test_runs_bill_every_period_once_without_gaps(arrears, day, months, tz, step_days) -> None:
    start = following_period(datetime(2025, 12, 31, 23, tzinfo=UTC), (day, 1, 2026), months, tz)
    state = sub(
        arrears,
        period_start=start.start,
        period_end=start.end,
        anchor=(day, 1, 2026),
        interval_months=months,
        timezone=tz,
    )
    billed: list[Period] = []
    as_of = start.start
    while as_of < start.start + timedelta(days=3 * 366):
        current_billed = Period(state.period_start, state.period_end) in billed
        step = plan_step(state, as_of, current_billed)
        if step.bill is not None:
            assert step.bill not in billed
            billed.append(step.bill)
        if step.new_period is not None:
            assert step.new_period.start == state.period_end  # tiles time
            state = sub(
                arrears,
                period_start=step.new_period.start,
                period_end=step.new_period.end,
                anchor=(day, 1, 2026),
                interval_months=months,
                timezone=tz,
            )
        as_of += timedelta(days=step_days)
    assert billed
    for a, b in itertools.pairwise(billed):
        assert a.end == b.start  # no gap, no overlap
    # Advance periods are billed once started, arrears ones once ended.
    assert all((p.end if arrears else p.start) <= as_of for p in billed)


@given(st.integers(0, 5), st.sampled_from(["once", "repeating", "forever"]))
def test_discount_lines_follow_the_duration(index, duration) -> None:
    price = PriceInfo(
        1, "Plan", "EUR", pricing.FlatPrice(Money("49.00", "EUR")), "", "", "4000", 1, False
    )
    discount = pricing.Discount(
        percent_off=Decimal(10), duration=duration, periods=3 if duration == "repeating" else None
    )
    lines, used = charge_lines(
        price, Period(FEB, MAR), Decimal(1), usage=None, discount=discount, discount_index=index
    )
    assert used == discount.applies_in_period(index)
    assert [x.amount_minor for x in lines] == ([4900, -490] if used else [4900])
    assert lines[0].kind == "recurring"
