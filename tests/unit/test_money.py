"""Unit and property tests for core.money."""

from __future__ import annotations

import dataclasses
import decimal
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.money import (
    AmountParseError,
    Currency,
    CurrencyMismatchError,
    Money,
    allocate,
    currency,
    format_money,
    parse_amount,
    split_evenly,
    sum_money,
)

USD = currency("USD")
EUR = currency("EUR")
JPY = currency("JPY")
KWD = currency("KWD")

# No example database on disk, no per-example deadline (Babel loads locale data lazily).
fast = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

currencies = st.sampled_from([JPY, USD, KWD])  # 0, 2 and 3 decimals
minor_units = st.integers(min_value=-(10**12), max_value=10**12)


@st.composite
def rounded_money(draw: st.DrawFn, cur: Currency | None = None) -> Money:
    chosen = cur if cur is not None else draw(currencies)
    return Money.from_minor(draw(minor_units), chosen)


@st.composite
def same_currency_triple(draw: st.DrawFn) -> tuple[Money, Money, Money]:
    cur = draw(currencies)
    return (
        draw(rounded_money(cur)),
        draw(rounded_money(cur)),
        draw(rounded_money(cur)),
    )


precise_amounts = st.decimals(
    min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=6, allow_nan=False
)
weights = st.lists(
    st.one_of(
        st.integers(min_value=0, max_value=1000),
        st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=12,
).filter(lambda ws: any(w > 0 for w in ws))


# --------------------------------------------------------------------------- currency


def test_currency_exponents_follow_iso() -> None:
    expected = {
        "JPY": 0,
        "KRW": 0,
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "CHF": 2,
        "KWD": 3,
        "BHD": 3,
        "JOD": 3,
        "OMR": 3,
        "TND": 3,
        "IQD": 3,  # CLDR says 0, ISO 4217 says 3
    }
    assert {code: currency(code).exponent for code in expected} == expected


def test_currency_normalises_and_caches() -> None:
    assert currency(" usd ") is currency("USD")
    assert currency("eur") == Currency("EUR", 2)
    assert str(currency("jpy")) == "JPY"
    assert USD.quantum == Decimal("0.01")
    assert JPY.quantum == Decimal("1")


@pytest.mark.parametrize("code", ["XYZ", "US", "", "USDD", "12$"])
def test_unknown_currency_raises(code: str) -> None:
    with pytest.raises(ValueError, match="unknown currency"):
        currency(code)


def test_unknown_currency_message() -> None:
    with pytest.raises(ValueError, match=r"^unknown currency 'XYZ'$"):
        currency("xyz")


# --------------------------------------------------------------------------- construction


def test_float_is_refused_everywhere() -> None:
    with pytest.raises(TypeError, match="float"):
        Money(1.5, USD)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        Money("1.50", USD) * 1.5
    with pytest.raises(TypeError, match="float"):
        allocate(Money("1.00", USD), [1.0, 2])  # type: ignore[list-item]


@given(st.floats(allow_nan=True, allow_infinity=True))
@fast
def test_any_float_construction_refused(value: float) -> None:
    with pytest.raises(TypeError):
        Money(value, USD)  # type: ignore[arg-type]


def test_accepts_decimal_int_and_str() -> None:
    assert Money(Decimal("1.50"), USD) == Money(1, USD) + Money("0.5", "usd")
    with pytest.raises(TypeError):
        Money(True, USD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid amount"):
        Money("1,50", USD)
    with pytest.raises(ValueError, match="finite"):
        Money("NaN", USD)
    with pytest.raises(ValueError, match="finite"):
        Money(Decimal("Infinity"), USD)


def test_immutable_and_no_negative_zero() -> None:
    m = Money("1.00", USD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.amount = Decimal(2)  # type: ignore[misc]
    neg_zero = -Money.zero(USD)
    assert not neg_zero.amount.is_signed()
    assert format_money(neg_zero) == "$0.00"


def test_truthiness_is_refused() -> None:
    with pytest.raises(TypeError, match="is_zero"):
        bool(Money.zero(USD))
    assert Money.zero(USD).is_zero()
    assert not Money("0.01", USD).is_zero()
    assert Money("-1", USD).is_negative()
    assert Money("1", USD).is_positive()


# --------------------------------------------------------------------------- arithmetic


@given(same_currency_triple())
@fast
def test_addition_associative_and_commutative(triple: tuple[Money, Money, Money]) -> None:
    a, b, c = triple
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b) - b == a
    assert a - a == Money.zero(a.currency)
    negated = -a
    assert -negated == a
    assert abs(a) == abs(-a)


@given(rounded_money(), rounded_money())
@fast
def test_mixing_currencies_always_raises(a: Money, b: Money) -> None:
    if a.currency == b.currency:
        b = Money(b.amount, EUR if a.currency != EUR else USD)
    for op in (
        lambda: a + b,
        lambda: a - b,
        lambda: a < b,
        lambda: a <= b,
        lambda: a > b,
        lambda: a >= b,
        lambda: sum_money([a, b], a.currency),
    ):
        with pytest.raises(CurrencyMismatchError):
            op()
    assert a != b
    assert issubclass(CurrencyMismatchError, ValueError)


def test_comparisons_within_currency() -> None:
    a, b = Money("1.00", USD), Money("2.5", USD)
    assert a < b
    assert a <= b
    assert b > a
    assert b >= a
    assert Money("1.0", USD) == Money("1.00", USD)
    assert hash(Money("1.0", USD)) == hash(Money("1.00", USD))
    assert sorted([b, a]) == [a, b]


def test_multiplication() -> None:
    price = Money("0.0125", USD)
    assert price * 3 == Money("0.0375", USD)
    assert 3 * price == price * 3
    assert price * Decimal("2.5") == Money("0.03125", USD)
    with pytest.raises(TypeError):
        price * price  # type: ignore[operator]
    with pytest.raises(TypeError):
        price * True
    with pytest.raises(TypeError):
        price + 1  # type: ignore[operator]


def test_arithmetic_never_rounds_silently() -> None:
    tiny = Money(Decimal("1e-40"), USD)
    big = Money(Decimal("1e20"), USD)
    with pytest.raises(decimal.Inexact):
        big + tiny


def test_sum_money() -> None:
    assert sum_money([], USD) == Money.zero(USD)
    items = [Money("1.10", USD), Money("2.20", USD), Money("-0.30", USD)]
    assert sum_money(items, "usd") == Money("3.00", USD)


# --------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("amount", "cur", "expected"),
    [
        ("0.125", USD, "0.12"),
        ("0.135", USD, "0.14"),
        ("2.665", USD, "2.66"),
        ("2.675", USD, "2.68"),
        ("-0.125", USD, "-0.12"),
        ("-0.135", USD, "-0.14"),
        ("0.5", JPY, "0"),
        ("1.5", JPY, "2"),
        ("2.5", JPY, "2"),
        ("-2.5", JPY, "-2"),
        ("1.0005", KWD, "1.000"),
        ("1.0015", KWD, "1.002"),
    ],
)
def test_half_even_examples(amount: str, cur: Currency, expected: str) -> None:
    rounded = Money(amount, cur).round()
    assert rounded == Money(expected, cur)
    assert rounded.amount.as_tuple().exponent == -cur.exponent


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (ROUND_HALF_UP, "2.67"),
        (ROUND_DOWN, "2.66"),
        (ROUND_FLOOR, "2.66"),
        (ROUND_CEILING, "2.67"),
        (ROUND_HALF_EVEN, "2.66"),
    ],
)
def test_explicit_rounding_modes(mode: str, expected: str) -> None:
    assert Money("2.665", USD).round(mode) == Money(expected, USD)


def test_invalid_rounding_mode() -> None:
    with pytest.raises(ValueError, match="rounding mode"):
        Money("1", USD).round("HALF_UP")


@given(currencies, precise_amounts)
@fast
def test_rounding_idempotent_and_on_exponent(cur: Currency, amount: Decimal) -> None:
    once = Money(amount, cur).round()
    assert once.round() == once
    assert once.is_rounded()
    assert once.amount.as_tuple().exponent == -cur.exponent
    assert abs(once.amount - amount) <= cur.quantum / 2


def test_is_rounded_is_value_based() -> None:
    assert Money("1.500", USD).is_rounded()
    assert Money("1.5", USD).is_rounded()
    assert not Money("1.505", USD).is_rounded()
    assert Money("1200", JPY).is_rounded()
    assert Money(Decimal("1.2E+3"), JPY).is_rounded()
    assert not Money("0.5", JPY).is_rounded()


# --------------------------------------------------------------------------- minor units


@given(currencies, minor_units)
@fast
def test_minor_units_round_trip(cur: Currency, units: int) -> None:
    money = Money.from_minor(units, cur)
    assert money.to_minor() == units
    assert Money.from_minor(money.to_minor(), cur) == money
    assert money.amount.as_tuple().exponent == -cur.exponent


def test_minor_units_examples() -> None:
    assert Money.from_minor(1050, USD) == Money("10.50", USD)
    assert Money.from_minor(-5, KWD) == Money("-0.005", KWD)
    assert Money("1234", JPY).to_minor() == 1234
    assert Money("1.5", USD).to_minor() == 150
    with pytest.raises(ValueError, match=r"round\(\)"):
        Money("1.005", USD).to_minor()
    with pytest.raises(TypeError):
        Money.from_minor(Decimal(5), USD)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- allocation


@given(rounded_money(), weights)
@fast
def test_allocate_sums_exactly_and_stays_near_share(money: Money, ws: list[int | Decimal]) -> None:
    parts = allocate(money, ws)
    assert len(parts) == len(ws)
    assert sum_money(parts, money.currency) == money
    total = money.to_minor()
    weight_total = sum(Fraction(w) for w in ws)
    for part, w in zip(parts, ws, strict=True):
        assert part.currency == money.currency
        assert part.is_rounded()
        exact_share = Fraction(total) * Fraction(w) / weight_total
        assert abs(part.to_minor() - exact_share) < 1
        if w == 0:
            assert part.is_zero()


@given(rounded_money(), weights)
@fast
def test_allocate_deterministic_and_mirrors_negative(money: Money, ws: list[int | Decimal]) -> None:
    assert allocate(money, ws) == allocate(money, list(ws))
    assert allocate(-money, ws) == [-p for p in allocate(money, ws)]


def test_allocate_examples() -> None:
    # Ties on remainder go to the earlier index.
    assert allocate(Money("0.05", USD), [1, 1]) == [Money("0.03", USD), Money("0.02", USD)]
    assert allocate(Money("100", JPY), [1, 1, 1]) == [
        Money(34, JPY),
        Money(33, JPY),
        Money(33, JPY),
    ]
    # Largest remainder wins over index.
    assert allocate(Money("0.05", USD), [Decimal("0.5"), 0, Decimal("0.25"), 1]) == [
        Money("0.01", USD),
        Money("0.00", USD),
        Money("0.01", USD),
        Money("0.03", USD),
    ]
    assert allocate(Money("-0.05", USD), [1, 1]) == [Money("-0.03", USD), Money("-0.02", USD)]
    assert allocate(Money("10.000", KWD), [70, 30]) == [Money("7", KWD), Money("3", KWD)]


def test_allocate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="rounded"):
        allocate(Money("1.005", USD), [1, 1])
    with pytest.raises(ValueError, match="positive"):
        allocate(Money("1", USD), [0, 0])
    with pytest.raises(ValueError, match="negative"):
        allocate(Money("1", USD), [2, -1])
    with pytest.raises(ValueError, match="at least one"):
        allocate(Money("1", USD), [])


@given(rounded_money(), st.integers(min_value=1, max_value=50))
@fast
def test_split_evenly_parts_differ_by_at_most_one_unit(money: Money, n: int) -> None:
    parts = split_evenly(money, n)
    assert len(parts) == n
    assert sum_money(parts, money.currency) == money
    units = [p.to_minor() for p in parts]
    assert max(units) - min(units) <= 1
    assert units == sorted(units, key=abs, reverse=True)  # extras go to the earliest parts


def test_split_evenly_rejects_bad_n() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_evenly(Money("1", USD), 0)
    with pytest.raises(TypeError):
        split_evenly(Money("1", USD), 2.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- display


@pytest.mark.parametrize(
    ("money", "locale", "expected"),
    [
        (Money("1234.5", USD), "en_US", "$1,234.50"),
        (Money("-1234.5", USD), "en_US", "-$1,234.50"),
        (Money("1234.5", EUR), "de_DE", "1.234,50\xa0€"),
        (Money("1235", JPY), "en_US", "¥1,235"),
        (Money("1.235", KWD), "en_US", "KWD1.235"),
        (Money("1.2", KWD), "en_US", "KWD1.200"),
        (Money("7", currency("IQD")), "en_US", "IQD7.000"),
    ],
)
def test_format_examples(money: Money, locale: str, expected: str) -> None:
    assert format_money(money, locale) == expected


def test_format_never_rounds_hidden_precision() -> None:
    assert format_money(Money("0.0125", USD)) == "$0.0125"
    assert format_money(Money("0.0125", USD).round()) == "$0.01"


@given(currencies, minor_units)
@fast
def test_format_shows_currency_decimals(cur: Currency, units: int) -> None:
    text = format_money(Money.from_minor(units, cur), "en_US")
    if cur.exponent == 0:
        assert "." not in text
    else:
        assert len(text.rsplit(".", 1)[1]) == cur.exponent


# --------------------------------------------------------------------------- parsing


@given(rounded_money())
@fast
def test_parse_round_trips_plain_format(money: Money) -> None:
    assert parse_amount(f"{money.amount:f}", money.currency, allow_negative=True) == money
    assert parse_amount(f"{money.amount:,f}", money.currency, allow_negative=True) == money


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.50", "1234.50"),
        ("1,234.50", "1234.50"),
        (" 1,234,567.5 ", "1234567.50"),
        ("12", "12.00"),
        (".5", "0.50"),
        ("0", "0.00"),
        ("+3.10", "3.10"),
    ],
)
def test_parse_accepts(text: str, expected: str) -> None:
    parsed = parse_amount(text, USD)
    assert parsed == Money(expected, USD)
    assert parsed.amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "text",
    ["", " ", "abc", "1,23.00", "1234,50", "12,34", "1e5", "1.2.3", "$12", "--1", "٣", "1 000"],
)
def test_parse_rejects_junk_with_user_message(text: str) -> None:
    with pytest.raises(AmountParseError, match=r"^Enter an amount like 1234\.50$"):
        parse_amount(text, USD)


def test_parse_rejects_excess_decimals_and_negatives() -> None:
    with pytest.raises(AmountParseError, match="at most 2 decimal places"):
        parse_amount("1.005", USD)
    with pytest.raises(
        AmountParseError, match=r"cannot have decimals\. Enter an amount like 1234$"
    ):
        parse_amount("1.5", JPY)
    with pytest.raises(AmountParseError, match=r"like 1234\.500$"):
        parse_amount("1.0005", KWD)
    with pytest.raises(AmountParseError, match="zero or more"):
        parse_amount("-1", USD)
    assert parse_amount("-1", USD, allow_negative=True) == Money("-1", USD)
    assert parse_amount("1.250", KWD) == Money("1.25", KWD)
    with pytest.raises(AmountParseError):
        parse_amount("9" * 60, USD)
    assert issubclass(AmountParseError, ValueError)
