"""Properties and examples of core.billing.changes: subscription-level previews built on
the proration rules (the line-level properties live in test_proration.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.billing.changes import (
    ChangePreview,
    Plan,
    SubscriptionState,
    plan_charge,
    preview_cancel,
    preview_change,
    preview_start,
)
from core.billing.periods import MONTH, YEAR, BillingAnchor, Period, period_containing
from core.billing.proration import prorate, proration_fraction
from core.catalog import pricing
from core.money import Money, currency

fast = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
USD, JPY, KWD = currency("USD"), currency("JPY"), currency("KWD")
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]

currencies = st.sampled_from([USD, JPY, KWD])
billed_states = st.booleans()
modes = st.sampled_from([ROUND_HALF_EVEN, ROUND_HALF_UP])
quantities = st.integers(min_value=1, max_value=500)
unit_prices = st.decimals(min_value=0, max_value=5000, places=3, allow_nan=False)
starts = st.datetimes(
    min_value=datetime(2010, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by design
    max_value=datetime(2035, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@st.composite
def definitions(draw: st.DrawFn, cur: object) -> pricing.PriceDefinition:
    mode = draw(modes)
    unit = Money(draw(unit_prices), cur)  # type: ignore[arg-type]
    kind = draw(st.sampled_from(["flat", "per_unit", "package", "graduated", "volume"]))
    if kind == "flat":
        return pricing.FlatPrice(unit, rounding=mode)
    if kind == "per_unit":
        return pricing.PerUnitPrice(unit, mode)
    if kind == "package":
        return pricing.PackagePrice(unit.round(), draw(st.integers(1, 50)), mode)
    tiers = (
        pricing.Tier(draw(st.integers(1, 20)), unit),
        pricing.Tier(None, Money(draw(unit_prices), cur)),  # type: ignore[arg-type]
    )
    return (pricing.GraduatedPrice if kind == "graduated" else pricing.VolumePrice)(tiers, mode)


@st.composite
def plans(draw: st.DrawFn, cur: object, price_id: int, interval=MONTH) -> Plan:
    definition = draw(definitions(cur))
    qty = draw(quantities)
    charge = plan_charge(f"plan {price_id}", definition, qty)
    return Plan(price_id, Decimal(qty), charge, interval)


def state_for(
    plan: Plan, period: Period, anchor: BillingAnchor, tz: str, billed: bool = True
) -> SubscriptionState:
    return SubscriptionState("active", plan, period, anchor, tz, billed=billed)


def instants_in(draw: st.DrawFn, period: Period, count: int) -> list[datetime]:
    seconds = int(period.duration.total_seconds())
    offsets = draw(
        st.lists(st.integers(1, seconds - 1), min_size=count, max_size=count, unique=True)
    )
    return [period.start + timedelta(seconds=o) for o in sorted(offsets)]


def minor(preview: ChangePreview) -> int:
    return sum(line.amount.to_minor() for line in preview.lines)


# --------------------------------------------------------------------------- properties


@given(st.data(), currencies, billed_states, st.integers(2, 5), st.sampled_from(ZONES))
@fast
def test_changes_through_a_period_bill_what_the_pieces_cost_alone(
    data: st.DataObject, cur, billed: bool, pieces: int, tz: str
) -> None:
    """A period split into consecutive pieces at different plans (changes of price and
    quantity, any pricing model) bills the same total as each piece computed alone, within
    one minor unit per line."""
    anchor = BillingAnchor(data.draw(st.integers(1, 31)))
    period = period_containing(data.draw(starts), anchor, MONTH, tz)
    ps = [data.draw(plans(cur, i)) for i in range(pieces)]
    cuts = instants_in(data.draw, period, pieces - 1)
    bounds = [period.start, *cuts, period.end]

    state = state_for(ps[0], period, anchor, tz, billed)
    lines_minor, line_count = 0, 0
    for i, at in enumerate(cuts):
        preview = preview_change(state, ps[i + 1], at)
        assert preview.period == period
        lines_minor += minor(preview)
        line_count += len(preview.lines)
        state = state_for(ps[i + 1], period, anchor, tz, billed)
    # What the run bills for the period, in full: billed already = the plan at its start;
    # not yet (arrears, or advance before the run) = the plan in force when it bills.
    full = (ps[0] if billed else ps[-1]).charge
    billed = prorate(full, period, period.start, period.end).amount.to_minor() + lines_minor
    alone = [prorate(ps[i].charge, period, bounds[i], bounds[i + 1]) for i in range(pieces)]
    alone_minor = sum(line.amount.to_minor() for line in alone)
    exact = (
        sum(
            (
                Fraction(ps[i].charge.amount.amount)
                * proration_fraction(period, bounds[i], bounds[i + 1])
                for i in range(pieces)
            ),
            Fraction(0),
        )
        * 10**cur.exponent
    )
    chain_lines = line_count + 1
    assert abs(billed - exact) <= Fraction(chain_lines, 2)
    assert abs(billed - alone_minor) <= chain_lines


@given(st.data(), currencies, billed_states, st.sampled_from(ZONES))
@fast
def test_a_change_and_its_reversal_at_one_instant_net_to_zero(
    data: st.DataObject, cur, billed: bool, tz: str
) -> None:
    anchor = BillingAnchor(data.draw(st.integers(1, 31)))
    period = period_containing(data.draw(starts), anchor, MONTH, tz)
    old, new = data.draw(plans(cur, 1)), data.draw(plans(cur, 2))
    [at] = instants_in(data.draw, period, 1)
    there = preview_change(state_for(old, period, anchor, tz, billed), new, at)
    back = preview_change(state_for(new, period, anchor, tz, billed), old, at)
    assert there.net + back.net == Money.zero(cur)
    assert (there.credit + back.credit).to_minor() == -(there.charge + back.charge).to_minor()


@given(st.data(), currencies, billed_states, st.sampled_from(ZONES))
@fast
def test_cancel_now_and_restart_at_one_instant_net_to_zero(
    data: st.DataObject, cur, billed: bool, tz: str
) -> None:
    """Canceling now and restarting at the same instant bills, in the end, exactly what
    the period would have cost without either: the two previews net to zero."""
    anchor = BillingAnchor(data.draw(st.integers(1, 31)))
    period = period_containing(data.draw(starts), anchor, MONTH, tz)
    plan = data.draw(plans(cur, 1))
    [at] = instants_in(data.draw, period, 1)
    cancel = preview_cancel(state_for(plan, period, anchor, tz, billed), at, at_period_end=False)
    restart = preview_start(plan, anchor, tz, at, kind="restart", billed=billed)
    assert restart.period == period
    # invoiced: credit the rest, then charge it again; not invoiced: charge the time used,
    # then (the run bills the whole period) credit the time before the restart
    assert cancel.net + restart.net == Money.zero(cur)


# --------------------------------------------------------------------------- examples

NY = "America/New_York"


def _plan(price_id: int, amount: str, interval=MONTH) -> Plan:
    definition = pricing.FlatPrice(Money(Decimal(amount), USD))
    return Plan(price_id, Decimal(1), plan_charge(f"P{price_id}", definition, 1), interval)


def _month() -> tuple[Period, BillingAnchor]:
    anchor = BillingAnchor(1)
    return period_containing(datetime(2026, 3, 10, tzinfo=UTC), anchor, MONTH, NY), anchor


def test_mid_month_upgrade_credits_old_and_charges_new() -> None:
    period, anchor = _month()  # March 2026 in New York: 31 days less the DST hour
    at = period.start + (period.end - period.start) / 2
    preview = preview_change(
        state_for(_plan(1, "30.00"), period, anchor, NY), _plan(2, "90.00"), at
    )
    assert [(line.kind, line.amount) for line in preview.lines] == [
        ("proration_credit", Money("-15.00", "USD")),
        ("proration_charge", Money("45.00", "USD")),
    ]
    assert preview.net == Money("30.00", "USD")
    assert preview.lines[0].period_start == at
    assert preview.lines[0].period_end == period.end


def test_change_before_the_period_is_billed_bills_the_used_part_at_the_old_price() -> None:
    period, anchor = _month()
    at = period.start + (period.end - period.start) / 4
    old, new = _plan(1, "40.00"), _plan(2, "80.00")
    preview = preview_change(state_for(old, period, anchor, NY, billed=False), new, at)
    # used quarter: +10 at the old price, -20 at the new one (the run bills 80 at the end)
    assert [line.amount for line in preview.lines] == [
        Money("10.00", "USD"),
        Money("-20.00", "USD"),
    ]
    assert Money("80.00", "USD") + preview.net == Money("70.00", "USD")  # 10 + 60
    assert "not invoiced yet" in preview.notes[0]


def test_annual_to_monthly_starts_a_monthly_cycle_at_the_change() -> None:
    anchor = BillingAnchor(1, 1, 2026)
    year = period_containing(datetime(2026, 3, 10, tzinfo=UTC), anchor, YEAR, NY)
    at = datetime(2026, 7, 15, 16, 0, tzinfo=UTC)  # 12:00 in New York
    old = _plan(1, "1200.00", interval=YEAR)
    new = _plan(2, "120.00", interval=MONTH)
    preview = preview_change(state_for(old, year, anchor, NY), new, at)
    assert preview.anchor == BillingAnchor(15, 7, 2026)
    assert preview.period is not None
    assert preview.period.start == datetime(2026, 7, 15, 4, 0, tzinfo=UTC)  # local midnight
    assert preview.period.end == datetime(2026, 8, 15, 4, 0, tzinfo=UTC)
    credit, before = preview.lines
    assert credit.period_end == year.end
    assert credit.amount.is_negative()
    # the run bills the new monthly period in full; the 12 h before the change are credited
    assert (before.period_start, before.period_end) == (preview.period.start, at)
    assert before.amount == Money("-1.94", "USD")  # 120 x 12 h / 744 h = 1.935...
    assert "billed in full" in preview.notes[0]


def test_trial_and_metered_changes_bill_nothing() -> None:
    period, anchor = _month()
    at = period.start + timedelta(days=3)
    trial = SubscriptionState("trialing", _plan(1, "30.00"), period, anchor, NY)
    assert preview_change(trial, _plan(2, "90.00"), at).lines == ()
    assert preview_cancel(trial, at, at_period_end=False).lines == ()
    metered = pricing.PerUnitPrice(Money("0.01", "USD"))
    m1 = Plan(1, Decimal(1), plan_charge("API", metered, 1, metered=True), MONTH)
    m2 = Plan(2, Decimal(1), plan_charge("API+", metered, 5, metered=True), MONTH)
    assert preview_change(state_for(m1, period, anchor, NY), m2, at).lines == ()


def test_cancel_now_and_at_period_end() -> None:
    period, anchor = _month()
    at = period.start + (period.end - period.start) / 2
    state = state_for(_plan(1, "30.00"), period, anchor, NY)
    now = preview_cancel(state, at, at_period_end=False)
    assert [line.amount for line in now.lines] == [Money("-15.00", "USD")]
    assert preview_cancel(state, at, at_period_end=True).lines == ()
    unbilled = state_for(_plan(1, "30.00"), period, anchor, NY, billed=False)
    assert [line.amount for line in preview_cancel(unbilled, at, at_period_end=False).lines] == [
        Money("15.00", "USD")
    ]


def test_percentage_discount_in_force_lowers_the_prorated_amounts() -> None:
    definition = pricing.FlatPrice(Money("100.00", "USD"))
    off = pricing.Discount(percent_off=20, duration="forever")
    assert plan_charge("P", definition, 1, discount=off).amount == Money("80.00", "USD")
    fixed = pricing.Discount(amount_off=Money("5.00", "USD"), duration="once")
    assert plan_charge("P", definition, 1, discount=fixed).amount == Money("100.00", "USD")


def test_start_mid_period_credits_the_part_before_the_start() -> None:
    anchor = BillingAnchor(1, 1, 2026)
    at = datetime(2026, 4, 16, 4, 0, tzinfo=UTC)  # 16 April, local midnight in New York
    preview = preview_start(_plan(1, "300.00"), anchor, NY, at)
    assert preview.period == Period(
        datetime(2026, 4, 1, 4, 0, tzinfo=UTC), datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
    )
    assert [line.amount for line in preview.lines] == [Money("-150.00", "USD")]
    on_anchor = preview_start(_plan(1, "300.00"), BillingAnchor(16, 4, 2026), NY, at)
    assert on_anchor.lines == ()


def test_refusals() -> None:
    period, anchor = _month()
    canceled = SubscriptionState("canceled", _plan(1, "30.00"), period, anchor, NY)
    with pytest.raises(ValueError, match="canceled"):
        preview_change(canceled, _plan(2, "1.00"), period.start)
    eur = Plan(3, Decimal(1), plan_charge("E", pricing.FlatPrice(Money("1", "EUR")), 1), MONTH)
    active = state_for(_plan(1, "30.00"), period, anchor, NY)
    with pytest.raises(ValueError, match="currency"):
        preview_change(active, eur, period.start)
    with pytest.raises(ValueError, match="outside the current period"):
        preview_change(active, _plan(2, "1.00"), period.end + timedelta(seconds=1))
