"""Unit and property tests for core.catalog.pricing."""

from __future__ import annotations

import math
from collections.abc import Callable
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

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.catalog.pricing import (
    Discount,
    FlatPrice,
    GraduatedPrice,
    PackagePrice,
    PerUnitPrice,
    PriceDefinition,
    Tier,
    VolumePrice,
    WithMinimum,
    apply_discount,
    apply_minimum,
    discount_amount,
    flat_amount,
    graduated_amount,
    package_amount,
    per_unit_amount,
    price,
    price_exact,
    volume_amount,
)
from core.money import Currency, CurrencyMismatchError, Money, currency

USD = currency("USD")
JPY = currency("JPY")
KWD = currency("KWD")
EUR = currency("EUR")

fast = settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

currencies = st.sampled_from([JPY, USD, KWD])  # 0, 2 and 3 decimals
modes = st.sampled_from(
    [
        ROUND_HALF_EVEN,
        ROUND_HALF_UP,
        ROUND_HALF_DOWN,
        ROUND_UP,
        ROUND_DOWN,
        ROUND_CEILING,
        ROUND_FLOOR,
        ROUND_05UP,
    ]
)
# Unit prices with more decimals than any currency (sub-cent rates).
unit_prices = st.decimals(min_value=0, max_value=1000, places=5, allow_nan=False)
int_quantities = st.integers(min_value=0, max_value=100_000)
decimal_quantities = st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False)
quantities = st.one_of(int_quantities, decimal_quantities)


def minor(m: Money) -> int:
    return m.to_minor()


@st.composite
def tier_lists(draw: st.DrawFn, cur: Currency | None = None) -> list[Tier]:
    chosen = cur if cur is not None else draw(currencies)
    bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=5000), min_size=0, max_size=4)))
    tiers = []
    for bound in [*bounds, None]:
        fee = draw(st.one_of(st.none(), st.decimals(0, 500, places=2, allow_nan=False)))
        tiers.append(
            Tier(
                bound,
                Money(draw(unit_prices), chosen),
                None if fee is None else Money(fee, chosen),
            )
        )
    return tiers


# --------------------------------------------------------------------------- examples


def test_per_unit_sub_cent_examples() -> None:
    api_call = PerUnitPrice(Money("0.0125", USD))
    assert price(api_call, 1000) == Money("12.50", USD)
    # 3 x 0.0125 = 0.0375 -> 0.04 (rounded once); per-unit rounding would give 0.03.
    assert price(api_call, 3) == Money("0.04", USD)
    assert price(api_call, 2) == Money("0.02", USD)  # 0.025 -> half-even -> 0.02
    assert price(PerUnitPrice(Money("0.0125", USD), ROUND_HALF_UP), 2) == Money("0.03", USD)
    assert price(api_call, Decimal("0.5")) == Money("0.01", USD)  # 0.00625
    assert per_unit_amount(api_call, 0) == Money.zero(USD)
    assert price_exact(api_call, 3) == Money("0.0375", USD)


def test_results_are_at_the_currency_exponent() -> None:
    for cur in (USD, JPY, KWD):
        amount = price(PerUnitPrice(Money("1.23456", cur)), 7)
        assert amount.amount.as_tuple().exponent == -cur.exponent


def test_flat_examples() -> None:
    fee = FlatPrice(Money("49", USD))
    assert flat_amount(fee) == Money("49.00", USD)
    assert price(fee, 0) == Money("49.00", USD)  # recurring flat fee: always
    assert price(fee, 1000) == Money("49.00", USD)
    only_when_used = FlatPrice(Money("49", USD), charge_at_zero=False)
    assert price(only_when_used, 0) == Money.zero(USD)
    assert price(only_when_used, Decimal("0.001")) == Money("49.00", USD)


def test_package_examples() -> None:
    p = PackagePrice(Money("10", USD), 100)
    assert package_amount(p, 0) == Money.zero(USD)
    assert price(p, 1) == Money("10.00", USD)
    assert price(p, 100) == Money("10.00", USD)
    assert price(p, 101) == Money("20.00", USD)
    assert price(p, Decimal("100.0001")) == Money("20.00", USD)
    assert price(PackagePrice(Money("10", USD), 1), Decimal("2.5")) == Money("30.00", USD)


def test_tiered_examples() -> None:
    tiers = [
        Tier(10, Money("1.00", USD), flat_fee=Money("5", USD)),
        Tier(100, Money("0.50", USD)),
        Tier(None, Money("0.25", USD), flat_fee=Money("1", USD)),
    ]
    graduated, volume = GraduatedPrice(tiers), VolumePrice(tiers)
    # graduated: 10 x 1 + 5, 90 x 0.5, 20 x 0.25 + 1
    assert graduated_amount(graduated, 120) == Money("66.00", USD)
    assert graduated_amount(graduated, 0) == Money.zero(USD)
    assert price(graduated, 10) == Money("15.00", USD)
    assert price(graduated, Decimal("10.5")) == Money("15.25", USD)
    # volume: all 120 at tier 3 + its fee; 100 is still tier 2 (bounds are inclusive)
    assert volume_amount(volume, 120) == Money("31.00", USD)
    assert price(volume, 100) == Money("50.00", USD)
    assert price(volume, 10) == Money("15.00", USD)
    assert price(volume, 0) == Money.zero(USD)
    assert graduated.tiers == tuple(tiers)


def test_minimum_and_discount_examples() -> None:
    usage = PerUnitPrice(Money("0.10", USD))
    floored = WithMinimum(usage, Money("25", USD))
    assert price(floored, 10) == Money("25.00", USD)
    assert price(floored, 1000) == Money("100.00", USD)
    assert apply_minimum(Money("3", USD), None) == Money("3", USD)
    assert apply_minimum(Money("3", USD), Money("5", USD)) == Money("5", USD)

    ten_pct = Discount(percent_off=10, duration="forever")
    assert discount_amount(Money("99.95", USD), ten_pct) == Money("10.00", USD)  # 9.995
    assert apply_discount(Money("99.95", USD), ten_pct) == Money("89.95", USD)
    big = Discount(amount_off=Money("50", USD))
    assert apply_discount(Money("20", USD), big) == Money.zero(USD)
    assert discount_amount(Money("20", USD), big) == Money("20", USD)
    assert apply_discount(Money("80", USD), big) == Money("30", USD)


def test_discount_durations() -> None:
    once = Discount(percent_off=Decimal("12.5"))
    assert [once.applies_in_period(n) for n in range(3)] == [True, False, False]
    three = Discount(amount_off=Money("5", EUR), duration="repeating", periods=3)
    assert [three.applies_in_period(n) for n in range(5)] == [True, True, True, False, False]
    forever = Discount(percent_off=100, duration="forever")
    assert all(forever.applies_in_period(n) for n in (0, 1, 10**6))
    with pytest.raises(ValueError, match="zero or more"):
        once.applies_in_period(-1)
    with pytest.raises(TypeError):
        once.applies_in_period(1.0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Tier(0, Money(1, USD)), ValueError, "greater than zero"),
        (lambda: Tier(-5, Money(1, USD)), ValueError, "greater than zero"),
        (lambda: Tier(10, Money(-1, USD)), ValueError, "must not be negative"),
        (lambda: Tier(10, Money(1, USD), Money(-1, USD)), ValueError, "must not be negative"),
        (lambda: Tier(10, Money(1, USD), Money(1, EUR)), CurrencyMismatchError, "EUR"),
        (lambda: GraduatedPrice([]), ValueError, "at least one tier"),
        (
            lambda: GraduatedPrice(
                [Tier(10, Money(1, USD)), Tier(10, Money(1, USD)), Tier(None, Money(1, USD))]
            ),
            ValueError,
            "strictly increasing",
        ),
        (
            lambda: VolumePrice(
                [Tier(20, Money(1, USD)), Tier(10, Money(1, USD)), Tier(None, Money(1, USD))]
            ),
            ValueError,
            "strictly increasing",
        ),
        (lambda: VolumePrice([Tier(10, Money(1, USD))]), ValueError, "last tier must be unbounded"),
        (
            lambda: GraduatedPrice([Tier(None, Money(1, USD)), Tier(None, Money(1, USD))]),
            ValueError,
            "only the last tier",
        ),
        (
            lambda: GraduatedPrice([Tier(10, Money(1, USD)), Tier(None, Money(1, EUR))]),
            CurrencyMismatchError,
            "tier 2",
        ),
        (lambda: GraduatedPrice("abc"), TypeError, "sequence"),  # type: ignore[arg-type]
        (lambda: PackagePrice(Money(1, USD), 0), ValueError, "at least 1"),
        (lambda: PackagePrice(Money(1, USD), Decimal(2)), TypeError, "int"),  # type: ignore[arg-type]
        (lambda: PackagePrice(Money(-1, USD), 2), ValueError, "must not be negative"),
        (lambda: PerUnitPrice(Money("-0.01", USD)), ValueError, "must not be negative"),
        (lambda: PerUnitPrice(Money(1, USD), "HALF_UP"), ValueError, "rounding mode"),
        (lambda: FlatPrice(Decimal(5)), TypeError, "Money"),  # type: ignore[arg-type]
        (
            lambda: WithMinimum(FlatPrice(Money(1, USD)), Money(1, EUR)),
            CurrencyMismatchError,
            "minimum",
        ),
        (lambda: WithMinimum(FlatPrice(Money(1, USD)), Money("1.001", USD)), ValueError, "minor"),
        (lambda: Discount(), ValueError, "exactly one"),
        (lambda: Discount(percent_off=10, amount_off=Money(1, USD)), ValueError, "exactly one"),
        (lambda: Discount(percent_off=101), ValueError, "between 0 and 100"),
        (lambda: Discount(percent_off=-1), ValueError, "between 0 and 100"),
        (lambda: Discount(amount_off=Money("-1", USD)), ValueError, "must not be negative"),
        (lambda: Discount(percent_off=5, duration="repeating"), TypeError, "periods"),
        (lambda: Discount(percent_off=5, duration="repeating", periods=0), ValueError, "least 1"),
        (lambda: Discount(percent_off=5, periods=3), ValueError, "only for a repeating"),
        (lambda: Discount(percent_off=5, duration="weekly"), ValueError, "duration"),  # type: ignore[arg-type]
    ],
)
def test_invalid_definitions_are_refused(
    build: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize("bad", [-1, Decimal("-0.001"), Decimal("NaN"), Decimal("Infinity")])
def test_bad_quantities_are_refused(bad: Decimal | int) -> None:
    with pytest.raises(ValueError, match="quantity"):
        price(PerUnitPrice(Money(1, USD)), bad)


@pytest.mark.parametrize("bad", ["3", True, None, [1]])
def test_non_numeric_quantities_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="quantity"):
        price(PerUnitPrice(Money(1, USD)), bad)  # type: ignore[arg-type]


def test_discount_refuses_negative_or_unrounded_lines_and_other_currencies() -> None:
    d = Discount(percent_off=10)
    with pytest.raises(ValueError, match="negative"):
        discount_amount(Money("-1", USD), d)
    with pytest.raises(ValueError, match="round"):
        discount_amount(Money("1.005", USD), d)
    with pytest.raises(CurrencyMismatchError):
        discount_amount(Money("10", EUR), Discount(amount_off=Money(1, USD)))


def test_model_functions_check_their_model() -> None:
    with pytest.raises(TypeError, match="PackagePrice"):
        package_amount(PerUnitPrice(Money(1, USD)), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown price definition"):
        price(object(), 1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- no float


def _every_model() -> list[PriceDefinition]:
    tiers = [Tier(10, Money(1, USD)), Tier(None, Money("0.5", USD))]
    return [
        FlatPrice(Money(5, USD)),
        PerUnitPrice(Money("0.0125", USD)),
        PackagePrice(Money(10, USD), 5),
        GraduatedPrice(tiers),
        VolumePrice(tiers),
        WithMinimum(PerUnitPrice(Money(1, USD)), Money(3, USD)),
    ]


@given(st.floats(allow_nan=True, allow_infinity=True))
@fast
def test_no_float_quantity_anywhere(value: float) -> None:
    for definition in _every_model():
        with pytest.raises(TypeError, match="float"):
            price(definition, value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="float"):
            price_exact(definition, value)  # type: ignore[arg-type]


def test_no_float_in_definitions() -> None:
    for build in (
        lambda: Tier(10.0, Money(1, USD)),
        lambda: Tier(10, 1.5),
        lambda: PerUnitPrice(0.0125),
        lambda: PackagePrice(Money(1, USD), 2.0),
        lambda: FlatPrice(5.0),
        lambda: Discount(percent_off=12.5),
        lambda: Money(0.5, USD),
        lambda: Discount(percent_off=5).applies_in_period(0.0),
    ):
        with pytest.raises(TypeError):
            build()


# --------------------------------------------------------------------------- properties


@given(currencies, unit_prices, quantities, modes)
@fast
def test_per_unit_rounds_once(cur: Currency, unit: Decimal, q: Decimal | int, mode: str) -> None:
    amount = price(PerUnitPrice(Money(unit, cur), mode), q)
    exact = unit * Decimal(q)
    assert amount == Money(exact, cur).round(mode)
    assert amount.is_rounded()
    assert abs(amount.amount - exact) < cur.quantum  # one rounding: within one minor unit
    if mode == ROUND_HALF_EVEN:
        assert abs(amount.amount - exact) <= cur.quantum / 2


@given(currencies, st.lists(int_quantities, min_size=1, max_size=6))
@fast
def test_per_unit_lines_sum_within_half_unit_each(cur: Currency, qs: list[int]) -> None:
    p = PerUnitPrice(Money("0.0125", cur))
    lines = [price(p, q) for q in qs]
    exact = Decimal("0.0125") * sum(qs)
    total = sum(line.amount for line in lines)
    assert abs(total - exact) <= len(lines) * cur.quantum / 2


@given(tier_lists(), quantities, modes)
@fast
def test_graduated_and_volume_agree_on_the_first_tier(
    tiers: list[Tier], q: Decimal | int, mode: str
) -> None:
    first = tiers[0].up_to
    if first is not None and q > first:
        q = Decimal(q) % first
    assert price(GraduatedPrice(tiers, mode), q) == price(VolumePrice(tiers, mode), q)


@given(tier_lists(), quantities, quantities, modes)
@fast
def test_graduated_is_monotone(
    tiers: list[Tier], a: Decimal | int, b: Decimal | int, mode: str
) -> None:
    low, high = sorted([Decimal(a), Decimal(b)])
    g = GraduatedPrice(tiers, mode)
    assert price(g, low) <= price(g, high)
    assert price(g, 0).is_zero()


@given(tier_lists(), st.integers(min_value=0, max_value=300))
@fast
def test_graduated_prices_each_unit_at_its_tier(tiers: list[Tier], q: int) -> None:
    """Reference: walk unit by unit, add each tier's flat fee the first time it is used."""
    cur = tiers[0].unit_price.currency
    exact = Decimal(0)
    used: set[int] = set()
    for unit in range(1, q + 1):
        index = next(i for i, t in enumerate(tiers) if t.up_to is None or unit <= t.up_to)
        exact += tiers[index].unit_price.amount
        if index not in used:
            used.add(index)
            fee = tiers[index].flat_fee
            exact += fee.amount if fee is not None else 0
    assert price(GraduatedPrice(tiers), q) == Money(exact, cur).round()


@given(tier_lists(), quantities, modes)
@fast
def test_volume_charges_every_unit_at_one_tier(
    tiers: list[Tier], q: Decimal | int, mode: str
) -> None:
    cur = tiers[0].unit_price.currency
    qd = Decimal(q)
    amount = price(VolumePrice(tiers, mode), q)
    if qd == 0:
        assert amount.is_zero()
        return
    tier = next(t for t in tiers if t.up_to is None or qd <= t.up_to)
    fee = tier.flat_fee.amount if tier.flat_fee is not None else Decimal(0)
    assert amount == Money(qd * tier.unit_price.amount + fee, cur).round(mode)


@given(
    currencies,
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=0, max_value=10_000),
)
@fast
def test_package_rounds_blocks_up(cur: Currency, price_minor: int, size: int, k: int) -> None:
    package = Money.from_minor(price_minor, cur)
    p = PackagePrice(package, size)
    assert price(p, size * k) == package * k
    assert price(p, size * k + 1) == price(p, size * k) + package  # one block more
    if k > 0:
        # anything in the block (size*(k-1), size*k] costs the same as its upper end
        assert price(p, size * (k - 1) + 1) == price(p, size * k)
    assert price(p, 0).is_zero()


@given(currencies, unit_prices, st.integers(1, 500), decimal_quantities, modes)
@fast
def test_package_any_quantity_costs_its_next_multiple(
    cur: Currency, unit: Decimal, size: int, q: Decimal, mode: str
) -> None:
    p = PackagePrice(Money(unit, cur), size, mode)
    below = size * int(q // size)
    next_multiple = below if below == q else below + size
    assert price(p, q) == price(p, next_multiple)
    assert price(p, q) == Money(unit * math.ceil(q / size), cur).round(mode)


@given(st.sampled_from(_every_model()), quantities, st.integers(0, 10**6))
@fast
def test_minimum_never_lowers_a_charge(
    definition: PriceDefinition, q: Decimal | int, floor_minor: int
) -> None:
    floor = Money.from_minor(floor_minor, USD)
    base = price(definition, q)
    floored = price(WithMinimum(definition, floor), q)
    assert floored >= base
    assert floored >= floor
    assert floored == max(base, floor)
    assert apply_minimum(base, floor) == floored


@st.composite
def discounts(draw: st.DrawFn, cur: Currency) -> Discount:
    if draw(st.booleans()):
        return Discount(
            percent_off=draw(st.decimals(0, 100, places=3, allow_nan=False)),
            rounding=draw(modes),
        )
    return Discount(amount_off=Money.from_minor(draw(st.integers(0, 10**8)), cur))


@given(st.data(), currencies, st.integers(0, 10**8))
@fast
def test_discounts_never_go_below_zero(data: st.DataObject, cur: Currency, units: int) -> None:
    amount = Money.from_minor(units, cur)
    discount = data.draw(discounts(cur))
    off = discount_amount(amount, discount)
    after = apply_discount(amount, discount)
    assert off.is_rounded()
    assert after.is_rounded()
    assert Money.zero(cur) <= off <= amount
    assert Money.zero(cur) <= after <= amount
    assert off + after == amount
