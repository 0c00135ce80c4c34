"""Pure cash rules: when a residual may be written off without approval, how an early-
payment discount is earned, and how a settlement difference splits into net and tax.

Plain values in, plain values out (integer minor units, ``Decimal`` percentages); the
services in this package load, lock, post and audit around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from core.money import Money, allocate, currency

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class WriteOffLimits:
    """A residual is within the rule when it is at most ``max_amount_minor`` and at most
    ``max_percent`` % of the invoice total; a ``None`` limit is not checked, and with
    both ``None`` nothing is within the rule."""

    max_amount_minor: int | None
    max_percent: Decimal | None


def default_limits(currency_code: str) -> WriteOffLimits:
    """5 major units (5.00 EUR, 5 JPY, 5.000 BHD) and 1 % of the invoice total."""
    exponent = currency(currency_code).exponent
    return WriteOffLimits(max_amount_minor=5 * 10**exponent, max_percent=Decimal(1))


def within_write_off_rule(residual_minor: int, total_minor: int, limits: WriteOffLimits) -> bool:
    """True when a positive residual may be written off at once (no approval)."""
    if residual_minor <= 0:
        return False
    if limits.max_amount_minor is None and limits.max_percent is None:
        return False
    if limits.max_amount_minor is not None and residual_minor > limits.max_amount_minor:
        return False
    # residual <= total * pct / 100, compared exactly in integers/decimals
    return limits.max_percent is None or Decimal(residual_minor) * HUNDRED <= (
        Decimal(total_minor) * limits.max_percent
    )


def discount_deadline(issue_date: date, days: int) -> date:
    """The last day (inclusive) a payment earns the early-payment discount."""
    return issue_date + timedelta(days=days)


def early_payment_discount(
    total_minor: int,
    currency_code: str,
    percent: Decimal,
    issue_date: date,
    days: int,
    paid_on: date,
) -> int:
    """The discount (minor units) a payment on ``paid_on`` earns: ``percent`` % of the
    invoice total, rounded half-even once, if paid on or before issue date + ``days``;
    otherwise 0."""
    if percent <= 0 or days < 0 or paid_on > discount_deadline(issue_date, days):
        return 0
    cur = currency(currency_code)
    exact = Money.from_minor(total_minor, cur).amount * percent / HUNDRED
    return Money(exact, cur).round(ROUND_HALF_EVEN).to_minor()


@dataclass(frozen=True, slots=True)
class SettlementSplit:
    net_minor: int
    tax_by_code: dict[str, int]

    @property
    def tax_minor(self) -> int:
        return sum(self.tax_by_code.values())


def split_difference(
    difference_minor: int,
    currency_code: str,
    subtotal_minor: int,
    tax_by_code: Mapping[str, int],
) -> SettlementSplit:
    """Split a settlement difference into net and tax, proportionally to the invoice's
    subtotal and its tax per tax code.

    Largest-remainder rounding (``core.money.allocate``): the parts sum to the
    difference exactly and each is within one minor unit of its exact share
    ``difference * part / (subtotal + tax)``. Codes with zero tax get zero.
    """
    if difference_minor < 0:
        raise ValueError("a settlement difference cannot be negative")
    codes = sorted(tax_by_code)
    weights = [subtotal_minor, *(tax_by_code[c] for c in codes)]
    if any(w < 0 for w in weights):
        raise ValueError("an invoice with negative net or tax cannot be split proportionally")
    if difference_minor == 0 or sum(weights) == 0:
        return SettlementSplit(difference_minor, dict.fromkeys(codes, 0))
    parts = allocate(Money.from_minor(difference_minor, currency_code), weights)
    return SettlementSplit(
        net_minor=parts[0].to_minor(),
        tax_by_code={c: p.to_minor() for c, p in zip(codes, parts[1:], strict=True)},
    )
