"""Billing periods: pure calendar arithmetic in the account's timezone.

Rules
-----
* **Interval** = N calendar months: ``MONTH`` (1), ``QUARTER`` (3), ``YEAR`` (12) or any
  ``Interval(n)`` with ``n >= 1``.
* **Anchor** = ``BillingAnchor(day, month=1, year=2000)``: the day of the month periods start
  on (1..31), and one month (``year``/``month``) in which a period starts; for an N-month
  interval periods start every N months from that reference, forwards and backwards. A plain
  ``int`` anchor means ``BillingAnchor(day)``: quarters start in Jan/Apr/Jul/Oct, years in
  January. ``BillingAnchor.on(instant, tz)`` anchors on the local date of an instant (e.g.
  the subscription start).
* **Boundaries** are local midnight (00:00) of the anchor day in the account's IANA timezone
  (``zoneinfo``). A month without that day uses its last day (anchor 31 -> Feb 28/29,
  Apr 30). Every boundary is computed from the anchor, never from the previous boundary, so
  clamping never drifts (Jan 31 -> Feb 28 -> Mar 31). If local midnight does not exist (a DST
  gap at midnight, or a skipped day such as Pacific/Apia's 2011-12-30) the boundary is the
  first instant whose local date is that day or later, i.e. the end of the gap; if midnight
  occurs twice, the first one.
* **Periods** are half-open ``[start, end)`` with ``start``/``end`` as timezone-aware UTC
  datetimes. They tile time: ``next_period(p).start == p.end``, no gaps, no overlaps. Their
  length in seconds follows the calendar and DST (a monthly period spanning the March DST
  change in New York is one hour shorter than the same dates in UTC); proration uses those
  exact lengths.
* Naive datetimes are refused (``ValueError``); time zones are ``tzinfo`` objects or IANA
  names (an unknown name is a ``ValueError``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MONTH",
    "QUARTER",
    "YEAR",
    "BillingAnchor",
    "Interval",
    "Period",
    "as_timezone",
    "next_period",
    "period_boundary",
    "period_containing",
    "previous_period",
    "require_aware",
]

_ONE_MICROSECOND: Final = timedelta(microseconds=1)


# --------------------------------------------------------------------------- values


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Interval:
    """A billing interval of ``months`` calendar months (``>= 1``)."""

    months: int

    def __post_init__(self) -> None:
        if _int(self.months, "interval months") < 1:
            raise ValueError(f"an interval must be at least 1 month, got {self.months}")

    @property
    def name(self) -> str:
        return {1: "month", 3: "quarter", 12: "year"}.get(self.months, f"{self.months} months")


MONTH: Final = Interval(1)
QUARTER: Final = Interval(3)
YEAR: Final = Interval(12)


@dataclass(frozen=True, slots=True)
class BillingAnchor:
    """Periods start at local midnight on ``day`` (clamped to the month's end), in
    ``month``/``year`` and every interval from there."""

    day: int
    month: int = 1
    year: int = 2000

    def __post_init__(self) -> None:
        if not 1 <= _int(self.day, "anchor day") <= 31:
            raise ValueError(f"anchor day must be between 1 and 31, got {self.day}")
        if not 1 <= _int(self.month, "anchor month") <= 12:
            raise ValueError(f"anchor month must be between 1 and 12, got {self.month}")
        if not 1 <= _int(self.year, "anchor year") <= 9999:
            raise ValueError(f"anchor year must be between 1 and 9999, got {self.year}")

    @classmethod
    def on(cls, instant: datetime, tz: tzinfo | str) -> BillingAnchor:
        """Anchor on the local date of ``instant`` in ``tz`` (day, month and year)."""
        local = require_aware(instant, "instant").astimezone(as_timezone(tz))
        return cls(local.day, local.month, local.year)

    def _reference(self) -> int:
        return self.year * 12 + self.month - 1


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open span ``[start, end)``; both stored as timezone-aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        start = require_aware(self.start, "period start").astimezone(UTC)
        end = require_aware(self.end, "period end").astimezone(UTC)
        if not start < end:
            raise ValueError(f"a period must end after it starts ({start} .. {end})")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def contains(self, instant: datetime) -> bool:
        """``start <= instant < end``."""
        return self.start <= require_aware(instant, "instant") < self.end


# --------------------------------------------------------------------------- helpers


def require_aware(value: object, what: str = "datetime") -> datetime:
    """Return ``value`` if it is a timezone-aware datetime; naive -> ``ValueError``."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value


def as_timezone(tz: tzinfo | str) -> tzinfo:
    """A ``tzinfo`` from a ``tzinfo`` or an IANA name such as ``"Europe/Berlin"``."""
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
    raise TypeError(f"time zone must be a tzinfo or an IANA name, got {type(tz).__name__}")


def _as_anchor(anchor: BillingAnchor | int) -> BillingAnchor:
    if isinstance(anchor, BillingAnchor):
        return anchor
    return BillingAnchor(_int(anchor, "anchor"))


def _as_interval(interval: Interval) -> Interval:
    if not isinstance(interval, Interval):
        raise TypeError(f"interval must be an Interval, got {type(interval).__name__}")
    return interval


@lru_cache(maxsize=8192)
def _boundary(month_index: int, day: int, tz: tzinfo) -> datetime:
    year, month0 = divmod(month_index, 12)
    month = month0 + 1
    target = date(year, month, min(day, calendar.monthrange(year, month)[1]))
    midnight = datetime(target.year, target.month, target.day, tzinfo=tz)  # fold=0
    candidate = midnight.astimezone(UTC)
    back = candidate.astimezone(tz)
    if back.date() == target and back.time() == time(0):
        return candidate
    # Midnight falls in a gap: fold=0 maps it past the gap. Find the first instant whose
    # local date is ``target`` or later (the transition itself) by bisection.
    lo = datetime(target.year, target.month, target.day, fold=1, tzinfo=tz).astimezone(UTC)
    if lo >= candidate or lo.astimezone(tz).date() >= target:
        lo = candidate - timedelta(days=2)
    hi = candidate
    while hi - lo > _ONE_MICROSECOND:  # invariant: date(lo) < target <= date(hi)
        mid = lo + (hi - lo) // 2
        if mid.astimezone(tz).date() >= target:
            hi = mid
        else:
            lo = mid
    return hi


def period_boundary(year: int, month: int, anchor_day: int, tz: tzinfo | str) -> datetime:
    """The UTC instant a period anchored on ``anchor_day`` starts in ``year``/``month``."""
    if not 1 <= _int(month, "month") <= 12:
        raise ValueError(f"month must be between 1 and 12, got {month}")
    day = BillingAnchor(anchor_day).day
    return _boundary(_int(year, "year") * 12 + month - 1, day, as_timezone(tz))


# --------------------------------------------------------------------------- periods


def period_containing(
    instant: datetime, anchor: BillingAnchor | int, interval: Interval, tz: tzinfo | str
) -> Period:
    """The billing period ``[start, end)`` that contains ``instant``."""
    moment = require_aware(instant, "instant")
    zone = as_timezone(tz)
    anch = _as_anchor(anchor)
    n = _as_interval(interval).months
    local = moment.astimezone(zone)
    index = local.year * 12 + local.month - 1
    k = index - (index - anch._reference()) % n
    while _boundary(k, anch.day, zone) > moment:
        k -= n
    while _boundary(k + n, anch.day, zone) <= moment:
        k += n
    return Period(_boundary(k, anch.day, zone), _boundary(k + n, anch.day, zone))


def next_period(
    period: Period, anchor: BillingAnchor | int, interval: Interval, tz: tzinfo | str
) -> Period:
    """The period that starts where ``period`` ends."""
    if not isinstance(period, Period):
        raise TypeError(f"period must be a Period, got {type(period).__name__}")
    return period_containing(period.end, anchor, interval, tz)


def previous_period(
    period: Period, anchor: BillingAnchor | int, interval: Interval, tz: tzinfo | str
) -> Period:
    """The period that ends where ``period`` starts."""
    if not isinstance(period, Period):
        raise TypeError(f"period must be a Period, got {type(period).__name__}")
    return period_containing(period.start - _ONE_MICROSECOND, anchor, interval, tz)
