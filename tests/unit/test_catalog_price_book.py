"""core.catalog.price_book: stored price rows <-> pricing definitions, and form input."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.catalog import pricing
from core.catalog.price_book import (
    PriceRow,
    definition_from_row,
    describe_definition,
    discount_from_row,
    parse_discount_form,
    parse_price_form,
)
from core.errors import ValidationFailed
from core.money import Money

fast = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def form(**fields: str) -> dict[str, str]:
    return {"code": "p1", "currency": "USD", "interval_months": "1", **fields}


def stored(values: dict) -> PriceRow:
    """As it comes back from the database: definition as a JSON string."""
    return PriceRow.of(
        {
            "model": values["model"],
            "definition": json.dumps(values["definition"]),
            "currency": values["currency"],
            "minimum_minor": values["minimum_minor"],
            "rounding": values["rounding"],
        }
    )


@pytest.mark.parametrize(
    ("fields", "quantity", "expected"),
    [
        ({"model": "flat", "amount": "49.00"}, 7, "49.00"),
        ({"model": "per_unit", "unit_amount": "0.0125"}, 3, "0.04"),
        ({"model": "package", "block_size": "100", "block_amount": "5.00"}, 101, "10.00"),
        ({"model": "graduated", "tiers": "10 1.00\n* 0.50 2.00"}, 12, "13.00"),
        ({"model": "volume", "tiers": "10 1.00\n* 0.50"}, 12, "6.00"),
        ({"model": "per_unit", "unit_amount": "1", "minimum": "25.00"}, 3, "25.00"),
    ],
)
def test_form_to_row_to_amount(fields: dict[str, str], quantity: int, expected: str) -> None:
    values = parse_price_form(form(**fields))
    definition = definition_from_row(stored(values))
    assert pricing.price(definition, quantity) == Money(expected, "USD")
    assert describe_definition(stored(values))


def test_rounding_name_reaches_the_definition() -> None:
    values = parse_price_form(form(model="per_unit", unit_amount="0.005", rounding="half_up"))
    definition = definition_from_row(stored(values))
    assert definition.rounding == ROUND_HALF_UP
    assert pricing.price(definition, 1) == Money("0.01", "USD")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"model": "flat", "amount": "abc"}, "amount", "Enter an amount"),
        ({"model": "flat", "amount": "-5"}, "amount", "zero or more"),
        ({"model": "per_unit", "unit_amount": ""}, "unit_amount", "Enter an amount"),
        ({"model": "package", "block_size": "0", "block_amount": "5"}, "block_size", "between"),
        ({"model": "graduated", "tiers": "10 1.00\n5 0.50\n* 0.1"}, "tiers", "increasing"),
        ({"model": "volume", "tiers": "* 1.00\n10 0.50"}, "tiers", "unbounded"),
        ({"model": "volume", "tiers": "10 1.00"}, "tiers", "unbounded"),
        ({"model": "graduated", "tiers": "ten 1.00"}, "tiers", "Tier 1"),
        ({"model": "magic"}, "model", "Choose"),
        ({"model": "flat", "amount": "1", "currency": "XXQ"}, "currency", "ISO 4217"),
        ({"model": "flat", "amount": "1", "minimum": "1.5", "currency": "JPY"}, "minimum", "JPY"),
        ({"model": "flat", "amount": "1", "interval_months": "0"}, "interval_months", "between"),
        ({"model": "flat", "amount": "1", "code": "bad code!"}, "code", "letters"),
        ({"model": "flat", "amount": "1", "billing_timing": "later"}, "billing_timing", "advance"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_price_form(form(**fields))
    assert field in caught.value.errors, caught.value.errors
    assert message in caught.value.errors[field]


tier_bounds = st.lists(st.integers(1, 10_000), min_size=0, max_size=5, unique=True).map(sorted)
unit = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False)


@given(tier_bounds, st.data(), st.sampled_from(["graduated", "volume"]), st.integers(0, 20_000))
@fast
def test_tiers_typed_in_price_like_the_pure_definition(
    bounds: list[int], data: st.DataObject, model: str, quantity: int
) -> None:
    prices = [data.draw(unit) for _ in range(len(bounds) + 1)]
    text = "\n".join(f"{b} {p}" for b, p in zip([*map(str, bounds), "*"], prices, strict=True))
    values = parse_price_form(form(model=model, tiers=text))
    tiers = tuple(
        pricing.Tier(b, Money(p, "USD")) for b, p in zip([*bounds, None], prices, strict=True)
    )
    direct = (pricing.GraduatedPrice if model == "graduated" else pricing.VolumePrice)(tiers)
    assert pricing.price(definition_from_row(stored(values)), quantity) == pricing.price(
        direct, quantity
    )


def test_discounts() -> None:
    pct = parse_discount_form(
        {
            "code": "d1",
            "name": "Launch",
            "kind": "percent",
            "percent": "12.5",
            "duration": "forever",
        }
    )
    d = discount_from_row(pct)
    assert d.percent_off == Decimal("12.5")
    assert d.applies_in_period(40)
    amt = parse_discount_form(
        {
            "code": "d2",
            "name": "Welcome",
            "kind": "amount",
            "amount": "10.00",
            "currency": "eur",
            "duration": "repeating",
            "duration_periods": "3",
        }
    )
    d2 = discount_from_row(amt)
    assert d2.amount_off == Money("10.00", "EUR")
    assert d2.applies_in_period(2)
    assert not d2.applies_in_period(3)
    with pytest.raises(ValidationFailed) as caught:
        parse_discount_form(
            {"code": "d3", "name": "", "kind": "percent", "percent": "150", "duration": "repeating"}
        )
    assert set(caught.value.errors) == {"name", "percent", "duration_periods"}


def test_corrupt_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="decimal string"):
        definition_from_row(PriceRow("flat", {"amount": 49.0}, "USD"))  # a float
    with pytest.raises(ValueError, match="unknown pricing model"):
        definition_from_row(PriceRow("bogus", {}, "USD"))
    with pytest.raises(ValueError, match="rounding"):
        definition_from_row(PriceRow("flat", {"amount": "1"}, "USD", rounding="sideways"))
