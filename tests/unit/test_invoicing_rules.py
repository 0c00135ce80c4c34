from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.invoicing.rules import (
    AGING_BUCKETS,
    LineInput,
    age,
    aging_bucket,
    format_number,
    price_line,
    totals,
)
from core.money import Money, currency

quantities = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False)
prices = st.decimals(min_value=0, max_value=10**5, places=4, allow_nan=False)
rates = st.sampled_from([Decimal(0), Decimal("0.07"), Decimal("0.0825"), Decimal("0.19")])


@given(quantities, prices, rates, st.sampled_from(["USD", "JPY", "KWD", "EUR"]))
def test_line_is_rounded_once_and_within_half_a_minor_unit(
    qty: Decimal, price: Decimal, rate: Decimal, code: str
) -> None:
    priced = price_line(LineInput("x", qty, price, rate), code)
    cur = currency(code)
    exact = qty * price
    amount = Money.from_minor(priced.amount_minor, cur).amount
    assert abs(amount - exact) <= cur.quantum / 2
    tax = Money.from_minor(priced.tax_minor, cur).amount
    assert abs(tax - amount * rate) <= cur.quantum / 2


@given(st.lists(st.tuples(quantities, prices, rates), min_size=1, max_size=6))
def test_invoice_totals_are_sums_of_rounded_lines(items: list[tuple[Decimal, ...]]) -> None:
    priced = [price_line(LineInput("x", q, p, r), "EUR") for q, p, r in items]
    subtotal, tax, total = totals(priced)
    assert subtotal == sum(p.amount_minor for p in priced)
    assert tax == sum(p.tax_minor for p in priced)
    assert total == subtotal + tax


def test_half_even_rounding_at_line_level() -> None:
    # 3 x 0.125 = 0.375 -> 0.38 (half-even rounds 0.375 to the even 0.38)
    assert price_line(LineInput("x", Decimal(3), Decimal("0.125")), "USD").amount_minor == 38
    # 1 x 0.125 = 0.125 -> 0.12
    assert price_line(LineInput("x", Decimal(1), Decimal("0.125")), "USD").amount_minor == 12


def test_document_number_format() -> None:
    assert format_number("INV-DE", 2026, 123) == "INV-DE-2026-000123"


@pytest.mark.parametrize(
    ("days_late", "bucket"),
    [
        (-5, "current"),
        (0, "current"),
        (1, "days_1_30"),
        (30, "days_1_30"),
        (31, "days_31_60"),
        (60, "days_31_60"),
        (61, "days_61_90"),
        (90, "days_61_90"),
        (91, "days_over_90"),
    ],
)
def test_aging_bucket_boundaries(days_late: int, bucket: str) -> None:
    as_of = date(2026, 11, 22)
    assert aging_bucket(as_of - timedelta(days=days_late), as_of) == bucket


@given(st.lists(st.tuples(st.integers(-200, 400), st.integers(0, 10**9)), max_size=30))
def test_aging_buckets_partition_the_open_balance(items: list[tuple[int, int]]) -> None:
    as_of = date(2026, 11, 22)
    buckets = age(((as_of - timedelta(days=d), b) for d, b in items), as_of)
    assert set(buckets) == set(AGING_BUCKETS)
    assert sum(buckets.values()) == sum(b for _, b in items)
