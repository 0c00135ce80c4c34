"""Unit and property tests for core.billing.proration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_05UP,
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.billing.periods import (
    MONTH,
    QUARTER,
    YEAR,
    BillingAnchor,
    Interval,
    Period,
    next_period,
    period_containing,
)
from core.billing.proration import (
    LineItem,
    RecurringCharge,
    change_interval,
    change_within_period,
    charge_remaining,
    credit_unused,
    prorate,
    proration_fraction,
    round_fraction,
)
from core.catalog.pricing import PerUnitPrice, price
from core.money import Currency, CurrencyMismatchError, Money, currency

USD = currency("USD")
JPY = currency("JPY")
KWD = currency("KWD")
EUR = currency("EUR")

fast = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

HALF_MODES = [ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_HALF_DOWN]
DIRECTED_MODES = [ROUND_UP, ROUND_DOWN, ROUND_CEILING, ROUND_FLOOR, ROUND_05UP]
modes = st.sampled_from(HALF_MODES + DIRECTED_MODES)
currencies = st.sampled_from([JPY, USD, KWD])
zones = st.sampled_from(
    ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago"]
).map(ZoneInfo)
intervals = st.sampled_from([MONTH, QUARTER, YEAR, Interval(2)])
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by design
    max_value=datetime(2040, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
# Full-period amounts: rounded, or carrying extra precision (e.g. from a sub-cent unit price).
amounts = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.decimals(min_value=0, max_value=10**6, places=5, allow_nan=False),
)


@st.composite
def periods(draw: st.DrawFn) -> Period:
    anchor = BillingAnchor(draw(st.integers(1, 31)), draw(st.integers(1, 12)), 2000)
    return period_containing(draw(instants), anchor, draw(intervals), draw(zones))


def instants_in(draw: st.DrawFn, period: Period, count: int) -> list[datetime]:
    """``count`` sorted, distinct instants strictly inside ``period`` (microsecond grain)."""
    total = period.duration // timedelta(microseconds=1)
    grain = draw(st.sampled_from([1, 1_000_000]))  # microseconds or whole seconds
    offsets = draw(
        st.lists(st.integers(1, total // grain - 1), min_size=count, max_size=count, unique=True)
    )
    return [period.start + timedelta(microseconds=o * grain) for o in sorted(offsets)]


def minor_units(lines: list[LineItem]) -> int:
    return sum(line.amount.to_minor() for line in lines)


def exact_minor(value: Fraction, cur: Currency) -> Fraction:
    return value * 10**cur.exponent


def per_line_bound(mode: str) -> Fraction:
    """How far one rounded line may be from its exact value, in minor units."""
    return Fraction(1, 2) if mode in HALF_MODES else Fraction(1)


# --------------------------------------------------------------------------- properties


@given(periods(), currencies, amounts, modes)
@fast
def test_full_period_proration_equals_the_full_price(
    period: Period, cur: Currency, amount: Decimal | int, mode: str
) -> None:
    charge = RecurringCharge("Pro plan", Money(amount, cur), mode)
    line = prorate(charge, period, period.start, period.end)
    assert line.fraction == 1
    assert line.amount == Money(amount, cur).round(mode)
    assert charge_remaining(charge, period, period.start).amount == line.amount
    assert credit_unused(charge, period, period.start).amount == -line.amount
    assert prorate(charge, period, period.end, period.end).amount.is_zero()


@given(st.data(), periods(), currencies, modes, st.integers(min_value=2, max_value=6))
@fast
def test_any_split_bills_the_pieces_within_one_minor_unit_per_line(
    data: st.DataObject, period: Period, cur: Currency, mode: str, pieces: int
) -> None:
    cuts = instants_in(data.draw, period, pieces - 1)
    prices = [
        RecurringCharge(f"plan {i}", Money(data.draw(amounts), cur), mode) for i in range(pieces)
    ]
    bounds = [period.start, *cuts, period.end]

    # Billed as it happens: the full first price, then at each cut a credit and a charge.
    chain = [prorate(prices[0], period, period.start, period.end)]
    for i, at in enumerate(cuts):
        chain.extend(change_within_period(prices[i], prices[i + 1], period, at))
    # Each piece computed alone.
    alone = [prorate(prices[i], period, bounds[i], bounds[i + 1]) for i in range(pieces)]

    exact = sum(
        (
            Fraction(prices[i].amount.amount) * proration_fraction(period, bounds[i], bounds[i + 1])
            for i in range(pieces)
        ),
        Fraction(0),
    )
    exact_units = exact_minor(exact, cur)
    bound = per_line_bound(mode)
    assert abs(minor_units(chain) - exact_units) <= len(chain) * bound
    assert abs(minor_units(alone) - exact_units) <= len(alone) * bound
    assert abs(minor_units(chain) - minor_units(alone)) <= len(chain) + len(alone)
    if mode in HALF_MODES:  # the documented guarantee: one minor unit per (chain) line
        assert abs(minor_units(chain) - minor_units(alone)) <= len(chain)
    for line in chain + alone:
        assert line.amount.is_rounded()
        assert line.period_start < line.period_end or line.fraction == 0


@given(st.data(), periods(), currencies, modes)
@fast
def test_a_change_and_its_reversal_at_the_same_instant_net_to_exactly_zero(
    data: st.DataObject, period: Period, cur: Currency, mode: str
) -> None:
    old = RecurringCharge("Basic", Money(data.draw(amounts), cur), mode)
    new = RecurringCharge("Pro", Money(data.draw(amounts), cur), data.draw(modes))
    (at,) = instants_in(data.draw, period, 1)
    lines = [
        *change_within_period(old, new, period, at),
        *change_within_period(new, old, period, at),
    ]
    assert minor_units(lines) == 0
    assert credit_unused(old, period, at).amount == -charge_remaining(old, period, at).amount


@given(st.data(), periods(), currencies)
@fast
def test_a_change_reversed_later_bills_the_time_actually_used(
    data: st.DataObject, period: Period, cur: Currency
) -> None:
    old = RecurringCharge("Basic", Money(data.draw(amounts), cur))
    new = RecurringCharge("Pro", Money(data.draw(amounts), cur))
    t1, t2 = instants_in(data.draw, period, 2)
    lines = [
        prorate(old, period, period.start, period.end),
        *change_within_period(old, new, period, t1),
        *change_within_period(new, old, period, t2),
    ]
    used_new = proration_fraction(period, t1, t2)
    exact = Fraction(old.amount.amount) * (1 - used_new) + Fraction(new.amount.amount) * used_new
    assert abs(minor_units(lines) - exact_minor(exact, cur)) <= Fraction(len(lines), 2)
    if old.amount == new.amount:  # no real change: nets to the full price exactly
        assert minor_units(lines) == old.amount.round().to_minor()


@given(st.data(), periods(), currencies, st.sampled_from(HALF_MODES))
@fast
def test_used_part_plus_unused_credit_is_the_full_price(
    data: st.DataObject, period: Period, cur: Currency, mode: str
) -> None:
    charge = RecurringCharge("Pro", Money(data.draw(amounts), cur), mode)
    (at,) = instants_in(data.draw, period, 1)
    used = prorate(charge, period, period.start, at)
    unused = charge_remaining(charge, period, at)
    full = prorate(charge, period, period.start, period.end)
    assert abs(used.amount.to_minor() + unused.amount.to_minor() - full.amount.to_minor()) <= 1
    assert used.fraction + unused.fraction == 1
    # cancel now = keep the full charge, credit the unused part
    cancel = credit_unused(charge, period, at)
    assert abs((full.amount + cancel.amount).to_minor() - used.amount.to_minor()) <= 1


@given(
    st.one_of(
        st.integers(-(10**9), 10**9),
        st.decimals(min_value=-(10**6), max_value=10**6, places=6, allow_nan=False),
    ),
    currencies,
    modes,
)
@fast
def test_round_fraction_matches_money_round(value: Decimal | int, cur: Currency, mode: str) -> None:
    assert round_fraction(Fraction(value), cur, mode) == Money(value, cur).round(mode)
    assert round_fraction(Decimal(value), cur, mode) == Money(value, cur).round(mode)


@given(st.integers(-(10**6), 10**6), st.integers(1, 10**6), currencies, modes)
@fast
def test_round_fraction_is_within_one_unit_and_half_for_half_modes(
    numerator: int, denominator: int, cur: Currency, mode: str
) -> None:
    value = Fraction(numerator, denominator)
    rounded = round_fraction(value, cur, mode).to_minor()
    assert abs(rounded - exact_minor(value, cur)) <= per_line_bound(mode)


# --------------------------------------------------------------------------- examples


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_mid_month_upgrade_example() -> None:
    april = period_containing(utc(2024, 4, 10), 1, MONTH, "UTC")  # 30 days
    basic = RecurringCharge("Basic", Money("30.00", USD))
    pro = RecurringCharge("Pro", Money("90.00", USD))
    credit, charge = change_within_period(basic, pro, april, utc(2024, 4, 11))  # 20 days left
    assert credit == LineItem(
        "Unused time on Basic",
        Money("-20.00", USD),
        utc(2024, 4, 11),
        utc(2024, 5, 1),
        Fraction(2, 3),
    )
    assert charge == LineItem(
        "Remaining time on Pro",
        Money("60.00", USD),
        utc(2024, 4, 11),
        utc(2024, 5, 1),
        Fraction(2, 3),
    )
    # a downgrade is the mirror image: a net credit
    down = change_within_period(pro, basic, april, utc(2024, 4, 11))
    assert sum(line.amount.to_minor() for line in down) == -4000


def test_proration_uses_exact_local_period_lengths() -> None:
    ny = ZoneInfo("America/New_York")
    march = period_containing(utc(2024, 3, 15), 1, MONTH, ny)  # 31 days minus the DST hour
    first_day_end = datetime(2024, 3, 2, tzinfo=ny)
    fraction = proration_fraction(march, march.start, first_day_end)
    assert fraction == Fraction(24, 31 * 24 - 1)
    line = prorate(RecurringCharge("Seat", Money("743.00", USD)), march, march.start, first_day_end)
    assert line.amount == Money("24.00", USD)


def test_sub_cent_unit_price_prorates_from_the_period_amount() -> None:
    usage = price(PerUnitPrice(Money("0.0125", USD)), 3)  # 0.0375 -> 0.04
    charge = RecurringCharge("API calls", usage)
    period = Period(utc(2024, 1, 1), utc(2024, 1, 3))
    assert prorate(charge, period, period.start, utc(2024, 1, 2)).amount == Money("0.02", USD)
    # one third, rounded once: 10.00 / 3 = 3.333... -> 3.33; KWD -> 3 decimals; JPY -> whole
    thirds = Period(utc(2024, 1, 1), utc(2024, 1, 4))
    for amount, expected in [(Money("10", USD), "3.33"), (Money("10", KWD), "3.333")]:
        line = prorate(RecurringCharge("x", amount), thirds, thirds.start, utc(2024, 1, 2))
        assert line.amount == Money(expected, amount.currency)
    yen = prorate(RecurringCharge("x", Money(1000, JPY)), thirds, thirds.start, utc(2024, 1, 2))
    assert yen.amount == Money(333, JPY)


def test_annual_to_monthly_credits_the_year_and_starts_a_new_cycle() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    year = period_containing(utc(2024, 5, 20), 1, YEAR, berlin)
    annual = RecurringCharge("Pro (annual)", Money("1200.00", EUR))
    monthly = RecurringCharge("Pro (monthly)", Money("120.00", EUR))
    at = datetime(2024, 5, 20, 15, tzinfo=berlin)
    change = change_interval(annual, year, monthly, MONTH, at, berlin)

    assert change.anchor == BillingAnchor(20, 5, 2024)
    assert change.period == Period(
        datetime(2024, 5, 20, tzinfo=berlin), datetime(2024, 6, 20, tzinfo=berlin)
    )
    assert change.credit.period_start == at
    assert change.credit.period_end == year.end
    assert change.credit.amount == -round_fraction(
        Fraction(1200) * proration_fraction(year, at, year.end), EUR
    )
    assert change.charge.period_start == at
    assert change.charge.period_end == change.period.end
    # the new period began at local midnight; 15 of its 744 hours were gone at the change
    assert change.charge.fraction == Fraction(31 * 24 - 15, 31 * 24)
    assert change.charge.amount == Money("117.58", EUR)  # 120 x 729/744 = 117.5806...
    assert change.charge.amount.is_rounded()
    assert change.lines == (change.credit, change.charge)
    # later periods follow the new anchor
    after = next_period(change.period, change.anchor, MONTH, berlin)
    assert after.start == datetime(2024, 6, 20, tzinfo=berlin)


def test_interval_change_can_keep_an_anchor() -> None:
    year = period_containing(utc(2024, 5, 20), 1, YEAR, "UTC")
    annual = RecurringCharge("annual", Money("1200", USD))
    monthly = RecurringCharge("monthly", Money("100", USD))
    change = change_interval(annual, year, monthly, MONTH, utc(2024, 5, 21), "UTC", new_anchor=1)
    assert change.period == Period(utc(2024, 5, 1), utc(2024, 6, 1))
    assert change.charge.amount == Money("35.48", USD)  # 100 x 11/31
    assert change.anchor == BillingAnchor(1)


def test_validation() -> None:
    period = Period(utc(2024, 1, 1), utc(2024, 2, 1))
    charge = RecurringCharge("x", Money("10", USD))
    with pytest.raises(ValueError, match="not inside the period"):
        prorate(charge, period, utc(2023, 12, 31), utc(2024, 1, 5))
    with pytest.raises(ValueError, match="not inside the period"):
        prorate(charge, period, utc(2024, 1, 5), utc(2024, 1, 4))
    with pytest.raises(ValueError, match="not inside the period"):
        credit_unused(charge, period, utc(2024, 2, 2))
    with pytest.raises(ValueError, match="timezone-aware"):
        charge_remaining(charge, period, datetime(2024, 1, 5))  # noqa: DTZ001
    with pytest.raises(CurrencyMismatchError):
        change_within_period(
            charge, RecurringCharge("y", Money("10", EUR)), period, utc(2024, 1, 5)
        )
    with pytest.raises(TypeError, match="Money"):
        RecurringCharge("x", Decimal(10))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RecurringCharge("x", 9.99)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounding mode"):
        RecurringCharge("x", Money(1, USD), "nearest")
    with pytest.raises(TypeError, match="float"):
        round_fraction(0.5, USD)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RecurringCharge"):
        prorate(Money(1, USD), period, period.start, period.end)  # type: ignore[arg-type]
