"""Proration: pure rules that turn mid-period changes into invoice line items.

Rules
-----
* **Exact time.** The share of a period used by a slice ``[start, end)`` is
  ``(end - start) / (period.end - period.start)``, measured exactly in microseconds (the
  resolution of ``datetime``; whole seconds in practice) on the real UTC instants of the
  period's boundaries, so DST days and short months count for what they really last. The
  fraction is a ``fractions.Fraction``: nothing is rounded until the very end.
* **Rounded once per line.** A line amount is ``full-period amount x fraction``, computed as
  an exact rational and rounded **once** to the currency's minor unit with the charge's
  rounding mode (half-even by default). A full-period slice (fraction 1) therefore equals the
  full-period amount, rounded.
* **Credits mirror charges.** The credit for a slice is exactly the negation of the charge
  the same slice would produce (the magnitude is rounded, then negated), so a change and its
  reversal at the same instant net to **exactly zero**, whatever the rounding mode.
* **Changes within a period** (plan, price or quantity; upgrade or downgrade) at instant
  ``at``: credit the unused part of the old charge, ``[at, period.end)``, and charge the new
  one for the same remainder. Cancel now = the credit alone; cancel at period end = nothing;
  reactivation = ``charge_remaining``.
* **Changes between intervals** (e.g. annual -> monthly) at ``at``: credit the unused part of
  the old period, ``[at, old_period.end)``, and start the new billing cycle at the change:
  by default the new anchor is the local date of ``at`` (``BillingAnchor.on(at, tz)``), so
  the new cycle's first period is the one starting at local midnight of the change date;
  only its remainder ``[at, end)`` is charged, and later periods follow on that anchor. A
  caller may keep an existing anchor instead (``new_anchor=``); the remainder of the new-
  interval period containing ``at`` is charged the same way.
* **Bounds.** Each line is within half a minor unit of its exact value (half-* modes) or one
  minor unit (directed modes). Splitting a period into consecutive pieces at different prices
  therefore bills the same total as the pieces computed alone within one minor unit per
  line, not exactly: every line is rounded on its own, as the money rules require.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
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
from typing import Final

from core.billing.periods import (
    BillingAnchor,
    Interval,
    Period,
    period_containing,
    require_aware,
)
from core.catalog.pricing import check_rounding
from core.money import Currency, CurrencyMismatchError, Money, currency

__all__ = [
    "IntervalChange",
    "LineItem",
    "RecurringCharge",
    "change_interval",
    "change_within_period",
    "charge_remaining",
    "credit_unused",
    "prorate",
    "proration_fraction",
    "round_fraction",
]

_MICROSECOND: Final = timedelta(microseconds=1)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class RecurringCharge:
    """What one full billing period of a subscription item costs.

    ``amount`` is the full-period line amount, normally ``pricing.price(definition, qty)``
    (rounded); an unrounded amount (e.g. ``price_exact``) is also fine, since every prorated
    line is rounded once anyway. ``rounding`` is the price's rounding mode.
    """

    description: str
    amount: Money
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        if not isinstance(self.description, str):
            raise TypeError("description must be a str")
        if not isinstance(self.amount, Money):
            raise TypeError(f"amount must be Money, got {type(self.amount).__name__}")
        check_rounding(self.rounding)


@dataclass(frozen=True, slots=True)
class LineItem:
    """An invoice line: ``amount`` is rounded (negative for a credit) and covers
    ``[period_start, period_end)``; ``fraction`` is that span's share of its full period."""

    description: str
    amount: Money
    period_start: datetime
    period_end: datetime
    fraction: Fraction


@dataclass(frozen=True, slots=True)
class IntervalChange:
    """Result of ``change_interval``: the lines, and the new cycle's anchor and period."""

    credit: LineItem
    charge: LineItem
    anchor: BillingAnchor
    period: Period  # the full new-interval period containing the change instant

    @property
    def lines(self) -> tuple[LineItem, LineItem]:
        return (self.credit, self.charge)


# --------------------------------------------------------------------------- arithmetic


def round_fraction(
    value: Fraction | Decimal | int, cur: Currency | str, rounding: str = ROUND_HALF_EVEN
) -> Money:
    """Round an exact rational amount (major units) to ``cur``'s minor unit, once.

    Same results as ``Money.round`` with the same ``decimal.ROUND_*`` mode, for values that
    are not finite decimals too (``Fraction(1, 3)``).
    """
    if isinstance(value, bool) or not isinstance(value, Fraction | Decimal | int):
        raise TypeError(f"value must be a Fraction, Decimal or int, got {type(value).__name__}")
    mode = check_rounding(rounding)
    code = cur if isinstance(cur, Currency) else currency(cur)
    scaled = Fraction(value) * 10**code.exponent
    negative = scaled < 0
    magnitude = -scaled if negative else scaled
    whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
    if remainder:
        twice = 2 * remainder
        half = (twice > magnitude.denominator) - (twice < magnitude.denominator)  # vs 1/2
        if mode == ROUND_DOWN:
            up = False
        elif mode == ROUND_UP:
            up = True
        elif mode == ROUND_CEILING:
            up = not negative
        elif mode == ROUND_FLOOR:
            up = negative
        elif mode == ROUND_HALF_UP:
            up = half >= 0
        elif mode == ROUND_HALF_DOWN:
            up = half > 0
        elif mode == ROUND_HALF_EVEN:
            up = half > 0 or (half == 0 and whole % 2 == 1)
        else:
            assert mode == ROUND_05UP
            up = whole % 10 in (0, 5)
        whole += int(up)
    return Money.from_minor(-whole if negative else whole, code)


def proration_fraction(period: Period, start: datetime, end: datetime) -> Fraction:
    """``(end - start) / (period.end - period.start)``, exact; needs
    ``period.start <= start <= end <= period.end``."""
    if not isinstance(period, Period):
        raise TypeError(f"period must be a Period, got {type(period).__name__}")
    begin = require_aware(start, "start")
    finish = require_aware(end, "end")
    if not period.start <= begin <= finish <= period.end:
        raise ValueError(
            f"slice {begin.isoformat()} .. {finish.isoformat()} is not inside the period "
            f"{period.start.isoformat()} .. {period.end.isoformat()}"
        )
    return Fraction((finish - begin) // _MICROSECOND, period.duration // _MICROSECOND)


# --------------------------------------------------------------------------- lines


def prorate(
    charge: RecurringCharge,
    period: Period,
    start: datetime,
    end: datetime,
    *,
    description: str | None = None,
) -> LineItem:
    """The charge for the slice ``[start, end)`` of ``period``: amount x fraction, rounded once."""
    if not isinstance(charge, RecurringCharge):
        raise TypeError(f"charge must be a RecurringCharge, got {type(charge).__name__}")
    fraction = proration_fraction(period, start, end)
    exact = Fraction(charge.amount.amount) * fraction
    amount = round_fraction(exact, charge.amount.currency, charge.rounding)
    return LineItem(
        description if description is not None else charge.description,
        amount,
        start.astimezone(period.start.tzinfo),
        end.astimezone(period.start.tzinfo),
        fraction,
    )


def charge_remaining(
    charge: RecurringCharge, period: Period, at: datetime, *, description: str | None = None
) -> LineItem:
    """Charge for the rest of ``period`` from ``at``: ``[at, period.end)``."""
    text = description if description is not None else f"Remaining time on {charge.description}"
    return prorate(charge, period, at, period.end, description=text)


def credit_unused(
    charge: RecurringCharge, period: Period, at: datetime, *, description: str | None = None
) -> LineItem:
    """Credit (negative line) for the unused part ``[at, period.end)`` of a paid period.

    Exactly the negation of ``charge_remaining`` for the same slice.
    """
    text = description if description is not None else f"Unused time on {charge.description}"
    line = prorate(charge, period, at, period.end, description=text)
    return LineItem(
        line.description, -line.amount, line.period_start, line.period_end, line.fraction
    )


def _same_currency(old: RecurringCharge, new: RecurringCharge) -> None:
    if old.amount.currency != new.amount.currency:
        raise CurrencyMismatchError(
            f"cannot prorate a change from {old.amount.currency.code} to {new.amount.currency.code}"
        )


def change_within_period(
    old: RecurringCharge, new: RecurringCharge, period: Period, at: datetime
) -> tuple[LineItem, LineItem]:
    """A change at ``at`` within one period: (credit unused old, charge remaining new)."""
    _same_currency(old, new)
    return credit_unused(old, period, at), charge_remaining(new, period, at)


def change_interval(
    old: RecurringCharge,
    old_period: Period,
    new: RecurringCharge,
    new_interval: Interval,
    at: datetime,
    tz: tzinfo | str,
    *,
    new_anchor: BillingAnchor | int | None = None,
) -> IntervalChange:
    """A change to another interval (e.g. annual -> monthly) at ``at``.

    Credits ``old`` for ``[at, old_period.end)``; the new cycle is anchored on the local date
    of ``at`` unless ``new_anchor`` is given, and ``new`` is charged for ``[at, end)`` of the
    new-interval period containing ``at``.
    """
    _same_currency(old, new)
    anchor = BillingAnchor.on(at, tz) if new_anchor is None else new_anchor
    if not isinstance(anchor, BillingAnchor):
        anchor = BillingAnchor(anchor)
    period = period_containing(at, anchor, new_interval, tz)
    return IntervalChange(
        credit=credit_unused(old, old_period, at),
        charge=charge_remaining(new, period, at),
        anchor=anchor,
        period=period,
    )
