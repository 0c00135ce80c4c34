"""Pure invoicing rules: line pricing (rounded once, at line level), document numbers,
due dates, aging buckets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from core.money import Money, currency

STATUSES = ("draft", "open", "paid", "void", "uncollectible")


@dataclass(frozen=True, slots=True)
class LineInput:
    description: str
    quantity: Decimal
    unit_price: Decimal  # major units; may carry more precision than the currency
    tax_rate: Decimal = Decimal(0)  # e.g. Decimal("0.19")
    tax_code: str = ""


@dataclass(frozen=True, slots=True)
class PricedLine:
    line: LineInput
    amount_minor: int
    tax_minor: int


def price_line(line: LineInput, currency_code: str, rounding: str = ROUND_HALF_EVEN) -> PricedLine:
    """Amount = quantity * unit price, and tax = amount * rate, each rounded once."""
    cur = currency(currency_code)
    amount = Money(line.quantity * line.unit_price, cur).round(rounding)
    tax = Money(amount.amount * line.tax_rate, cur).round(rounding)
    return PricedLine(line, amount.to_minor(), tax.to_minor())


def totals(lines: Iterable[PricedLine]) -> tuple[int, int, int]:
    """(subtotal, tax, total) in minor units: sums of already rounded lines."""
    items = list(lines)
    subtotal = sum(p.amount_minor for p in items)
    tax = sum(p.tax_minor for p in items)
    return subtotal, tax, subtotal + tax


def format_number(prefix: str, year: int, sequence: int) -> str:
    """``INV-DE-2026-000123``: prefix, year, and a zero-padded gapless sequence."""
    return f"{prefix}-{year}-{sequence:06d}"


def due_date(issue: date, terms_days: int) -> date:
    return issue + timedelta(days=terms_days)


AGING_BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "days_over_90")


def aging_bucket(due: date, as_of: date) -> str:
    late = (as_of - due).days
    if late <= 0:
        return "current"
    if late <= 30:
        return "days_1_30"
    if late <= 60:
        return "days_31_60"
    if late <= 90:
        return "days_61_90"
    return "days_over_90"


def age(open_items: Iterable[tuple[date, int]], as_of: date) -> dict[str, int]:
    """Sum open balances (due date, minor units) into aging buckets."""
    result = dict.fromkeys(AGING_BUCKETS, 0)
    for due, balance in open_items:
        result[aging_bucket(due, as_of)] += balance
    return result
