"""Properties of the pure cash rules: settlement splits, write-off limits, early-payment
discounts."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cash.rules import (
    WriteOffLimits,
    default_limits,
    discount_deadline,
    early_payment_discount,
    split_difference,
    within_write_off_rule,
)

amounts = st.integers(min_value=0, max_value=10**12)
codes = st.sampled_from(["STD", "RED", "ZERO", "US-CA", "US-NY", ""])
currencies = st.sampled_from(["EUR", "USD", "JPY", "BHD"])


@given(
    difference=amounts,
    subtotal=amounts,
    taxes=st.dictionaries(codes, amounts, max_size=4),
    cur=currencies,
)
def test_split_sums_exactly_and_each_part_is_within_one_unit(
    difference: int, subtotal: int, taxes: dict[str, int], cur: str
) -> None:
    split = split_difference(difference, cur, subtotal, taxes)
    assert split.net_minor + split.tax_minor == difference
    assert set(split.tax_by_code) == set(taxes)
    total = subtotal + sum(taxes.values())
    if total == 0 or difference == 0:
        assert split.net_minor == difference
        return
    parts = [(split.net_minor, subtotal)] + [(split.tax_by_code[c], taxes[c]) for c in taxes]
    for got, weight in parts:
        exact = Fraction(difference * weight, total)
        assert abs(got - exact) < 1
        assert got >= 0
        if weight == 0:
            assert got == 0


@given(difference=amounts, subtotal=st.integers(min_value=1, max_value=10**9))
def test_no_tax_means_all_net(difference: int, subtotal: int) -> None:
    split = split_difference(difference, "EUR", subtotal, {})
    assert (split.net_minor, split.tax_minor) == (difference, 0)


def test_split_example_two_tax_codes() -> None:
    split = split_difference(1000, "EUR", 15000, {"STD": 1900, "RED": 350})
    assert (split.net_minor, split.tax_by_code) == (870, {"RED": 20, "STD": 110})


def test_split_refuses_negative_inputs() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        split_difference(-1, "EUR", 100, {})
    with pytest.raises(ValueError, match="negative net or tax"):
        split_difference(1, "EUR", 100, {"STD": -5})


@given(
    residual=st.integers(min_value=-10, max_value=10**9),
    total=st.integers(min_value=1, max_value=10**10),
    max_amount=st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
    percent=st.one_of(st.none(), st.decimals(min_value=0, max_value=100, places=4)),
)
def test_write_off_rule_respects_every_set_limit(
    residual: int, total: int, max_amount: int | None, percent: Decimal | None
) -> None:
    ok = within_write_off_rule(residual, total, WriteOffLimits(max_amount, percent))
    if ok:
        assert residual > 0
        assert max_amount is not None or percent is not None
        if max_amount is not None:
            assert residual <= max_amount
        if percent is not None:
            assert Fraction(residual) <= Fraction(total) * Fraction(percent) / 100
    elif residual > 0 and (max_amount is not None or percent is not None):
        amount_ok = max_amount is None or residual <= max_amount
        pct_ok = percent is None or Fraction(residual) <= Fraction(total) * Fraction(percent) / 100
        assert not (amount_ok and pct_ok)


@given(
    residual=st.integers(min_value=1, max_value=10**6),
    total=st.integers(min_value=1, max_value=10**9),
)
def test_a_smaller_residual_is_never_refused_when_a_larger_one_passes(
    residual: int, total: int
) -> None:
    limits = default_limits("EUR")
    if within_write_off_rule(residual, total, limits):
        assert within_write_off_rule(residual - 1, total, limits) == (residual - 1 > 0)


def test_default_limits_follow_the_currency_exponent() -> None:
    assert default_limits("EUR") == WriteOffLimits(500, Decimal(1))
    assert default_limits("JPY") == WriteOffLimits(5, Decimal(1))
    assert default_limits("BHD") == WriteOffLimits(5000, Decimal(1))
    assert not within_write_off_rule(1, 100, WriteOffLimits(None, None))


@given(
    total=st.integers(min_value=0, max_value=10**10),
    percent=st.decimals(min_value=0, max_value=50, places=2),
    days=st.integers(min_value=0, max_value=60),
    offset=st.integers(min_value=-5, max_value=90),
    cur=currencies,
)
def test_discount_only_within_the_period_and_never_more_than_percent(
    total: int, percent: Decimal, days: int, offset: int, cur: str
) -> None:
    issued = date(2026, 1, 31)
    paid = issued + timedelta(days=offset)
    got = early_payment_discount(total, cur, percent, issued, days, paid)
    if paid > discount_deadline(issued, days) or percent == 0:
        assert got == 0
    else:
        exact = Fraction(total) * Fraction(percent) / 100
        assert abs(got - exact) <= Fraction(1, 2)
        assert 0 <= got <= total


def test_discount_example_two_ten() -> None:
    issued = date(2026, 3, 1)
    assert early_payment_discount(11900, "EUR", Decimal(2), issued, 10, date(2026, 3, 11)) == 238
    assert early_payment_discount(11900, "EUR", Decimal(2), issued, 10, date(2026, 3, 12)) == 0
