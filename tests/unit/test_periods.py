"""Unit and property tests for core.billing.periods."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, timezone
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
    as_timezone,
    next_period,
    period_boundary,
    period_containing,
    previous_period,
)

fast = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# DST at 02:00 (New York, Berlin), 30-minute DST (Lord Howe), +05:45 (Kathmandu), DST at
# midnight (Santiago, Havana, Beirut), a skipped day (Apia, 2011-12-30), +12:45/+13:45
# (Chatham), no DST (UTC, Tokyo).
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Asia/Tokyo",
]
ONE_US = timedelta(microseconds=1)

zones = st.sampled_from(ZONES).map(ZoneInfo)
intervals = st.one_of(
    st.sampled_from([MONTH, QUARTER, YEAR]),
    st.integers(min_value=1, max_value=18).map(Interval),
)
anchors = st.builds(
    BillingAnchor,
    day=st.integers(min_value=1, max_value=31),
    month=st.integers(min_value=1, max_value=12),
    year=st.integers(min_value=1990, max_value=2030),
)
instants = st.datetimes(
    min_value=datetime(1975, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive by design
    max_value=datetime(2090, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def expected_start_date(instant_start: datetime, tz: ZoneInfo, anchor_day: int) -> date:
    """The date a boundary should fall on: the anchor day, clamped to its month."""
    local = instant_start.astimezone(tz)
    last = calendar.monthrange(local.year, local.month)[1]
    return date(local.year, local.month, min(anchor_day, last))


def assert_is_boundary(start: datetime, tz: ZoneInfo, anchor: BillingAnchor) -> None:
    """``start`` is the first instant whose local date is the (clamped) anchor day or later.

    That is local midnight on the anchor day, or the end of the gap when midnight (or the
    whole day, as in Apia on 2011-12-30) was skipped.
    """
    assert start.tzinfo is UTC
    before, at = local_date(start - ONE_US, tz), local_date(start, tz)
    wanted = date(at.year, at.month, min(anchor.day, calendar.monthrange(at.year, at.month)[1]))
    assert before < wanted <= at


def month_index(instant: datetime, tz: ZoneInfo) -> int:
    local = instant.astimezone(tz)
    return local.year * 12 + local.month - 1


# --------------------------------------------------------------------------- properties


@given(instants, anchors, intervals, zones)
@fast
def test_periods_tile_time(
    instant: datetime, anchor: BillingAnchor, interval: Interval, tz: ZoneInfo
) -> None:
    period = period_containing(instant, anchor, interval, tz)
    assert period.start <= instant < period.end
    assert period.contains(instant)
    steps = max(2, 14 // interval.months)  # >= a year of periods: crosses DST changes
    for _ in range(steps):
        following = next_period(period, anchor, interval, tz)
        assert following.start == period.end  # no gap, no overlap
        assert previous_period(following, anchor, interval, tz) == period
        assert period_containing(period.start, anchor, interval, tz) == period
        assert period_containing(period.end - ONE_US, anchor, interval, tz) == period
        assert_is_boundary(period.start, tz, anchor)
        months = month_index(following.start, tz) - month_index(period.start, tz)
        assert months == interval.months
        period = following


@given(instants, st.integers(min_value=1, max_value=31), intervals, zones)
@fast
def test_int_anchor_and_phase(
    instant: datetime, day: int, interval: Interval, tz: ZoneInfo
) -> None:
    by_int = period_containing(instant, day, interval, tz)
    assert by_int == period_containing(instant, BillingAnchor(day, 1, 2000), interval, tz)
    # Periods start in months whose index is a multiple of N counted from January 2000.
    assert (month_index(by_int.start, tz) - 2000 * 12) % interval.months == 0


@given(instants, intervals, zones)
@fast
def test_anchor_on_instant_starts_a_period_that_day(
    instant: datetime, interval: Interval, tz: ZoneInfo
) -> None:
    own = BillingAnchor.on(instant, tz)
    period = period_containing(instant, own, interval, tz)
    assert local_date(period.start, tz) == local_date(instant, tz)
    assert_is_boundary(period.start, tz, own)


# --------------------------------------------------------------------------- examples


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_anchor_31_clamps_to_month_end_without_drift() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    period = period_containing(utc(2024, 1, 15), 31, MONTH, berlin)
    starts = []
    for _ in range(5):
        starts.append(period.start.astimezone(berlin).date())
        period = next_period(period, 31, MONTH, berlin)
    assert starts == [
        date(2023, 12, 31),
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
    ]
    assert period_containing(utc(2023, 2, 10), 31, MONTH, "UTC").end == utc(2023, 2, 28)


def test_boundaries_are_local_midnight_in_utc() -> None:
    ny = period_containing(utc(2024, 3, 20), 1, MONTH, "America/New_York")
    assert ny == Period(utc(2024, 3, 1, 5), utc(2024, 4, 1, 4))  # EST -> EDT
    assert ny.duration == timedelta(days=31) - timedelta(hours=1)
    tokyo = period_containing(utc(2024, 3, 31, 15, 30), 1, MONTH, "Asia/Tokyo")
    assert tokyo.start == utc(2024, 3, 31, 15)  # already April 1st in Tokyo
    assert period_boundary(2024, 3, 1, "America/New_York") == utc(2024, 3, 1, 5)


def test_quarter_year_and_custom_intervals() -> None:
    q = period_containing(utc(2024, 5, 20), 1, QUARTER, "UTC")
    assert q == Period(utc(2024, 4, 1), utc(2024, 7, 1))
    shifted = period_containing(utc(2024, 5, 20), BillingAnchor(15, 2), QUARTER, "UTC")
    assert shifted == Period(utc(2024, 5, 15), utc(2024, 8, 15))
    y = period_containing(utc(2024, 5, 20), BillingAnchor(10, 6, 2019), YEAR, "UTC")
    assert y == Period(utc(2023, 6, 10), utc(2024, 6, 10))
    five = period_containing(utc(2024, 5, 20), BillingAnchor(1, 1, 2024), Interval(5), "UTC")
    assert five == Period(utc(2024, 1, 1), utc(2024, 6, 1))
    assert next_period(five, BillingAnchor(1, 1, 2024), Interval(5), "UTC") == Period(
        utc(2024, 6, 1), utc(2024, 11, 1)
    )
    assert [i.name for i in (MONTH, QUARTER, YEAR, Interval(6))] == [
        "month",
        "quarter",
        "year",
        "6 months",
    ]


def test_midnight_in_a_dst_gap_starts_at_the_end_of_the_gap() -> None:
    santiago = ZoneInfo("America/Santiago")  # 2022-09-11 00:00 -04 -> 01:00 -03
    period = period_containing(utc(2022, 9, 20), 11, MONTH, santiago)
    assert period.start.astimezone(santiago) == datetime(2022, 9, 11, 1, tzinfo=santiago)
    assert period.start == utc(2022, 9, 11, 4)
    assert previous_period(period, 11, MONTH, santiago).end == period.start


def test_skipped_day_in_apia() -> None:
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 did not exist there
    period = period_containing(utc(2012, 1, 5), 30, MONTH, apia)
    assert period.start == utc(2011, 12, 30, 10)
    assert period.start.astimezone(apia).date() == date(2011, 12, 31)
    assert period.end.astimezone(apia) == datetime(2012, 1, 30, tzinfo=apia)
    before = previous_period(period, 30, MONTH, apia)
    assert before.start.astimezone(apia) == datetime(2011, 11, 30, tzinfo=apia)


def test_period_validation() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_containing(datetime(2024, 1, 1), 1, MONTH, "UTC")  # noqa: DTZ001
    with pytest.raises(TypeError, match="datetime"):
        period_containing(date(2024, 1, 1), 1, MONTH, "UTC")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown time zone"):
        period_containing(utc(2024, 1, 1), 1, MONTH, "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        as_timezone("../etc/passwd")
    with pytest.raises(TypeError, match="tzinfo"):
        as_timezone(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 1 and 31"):
        BillingAnchor(32)
    with pytest.raises(ValueError, match="between 1 and 31"):
        period_containing(utc(2024, 1, 1), 0, MONTH, "UTC")
    with pytest.raises(ValueError, match="between 1 and 12"):
        BillingAnchor(1, 13)
    with pytest.raises(TypeError, match="int"):
        BillingAnchor(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1 month"):
        Interval(0)
    with pytest.raises(TypeError, match="Interval"):
        period_containing(utc(2024, 1, 1), 1, 1, "UTC")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end after it starts"):
        Period(utc(2024, 1, 2), utc(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        Period(datetime(2024, 1, 1), utc(2024, 2, 1))  # noqa: DTZ001


def test_period_normalises_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    p = Period(datetime(2024, 1, 1, 2, tzinfo=plus2), datetime(2024, 2, 1, 2, tzinfo=plus2))
    assert p.start == utc(2024, 1, 1)
    assert p.start.tzinfo is UTC
    assert p.end.tzinfo is UTC
