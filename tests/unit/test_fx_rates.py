"""FX rules: conversion rounds once and explicitly, inversion and cross rates via EUR
are consistent, realized FX difference is the difference of two rounded conversions,
and the ECB parser is all-or-nothing with clear messages."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.fx.rates import (
    EcbFormatError,
    RateError,
    convert_minor,
    cross_via_eur,
    invert,
    parse_ecb_xml,
    realized_fx_difference,
)
from core.fx.services import pick_rate
from core.money import currency

rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4)
amounts = st.integers(min_value=-(10**12), max_value=10**12)
codes = st.sampled_from(["USD", "EUR", "JPY", "KWD", "GBP"])


def ecb(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">'
        "<gesmes:subject>Reference rates</gesmes:subject>"
        f"<Cube>{body}</Cube></gesmes:Envelope>"
    ).encode()


@given(amounts, codes, codes, rates)
def test_conversion_is_within_half_a_minor_unit_of_the_exact_value(
    amount: int, src: str, dst: str, rate: Decimal
) -> None:
    if src == dst:
        rate = Decimal(1)
    converted = convert_minor(amount, src, dst, rate)
    exact = Decimal(amount) / 10 ** currency(src).exponent * rate * 10 ** currency(dst).exponent
    assert abs(Decimal(converted) - exact) <= Decimal("0.5")


@given(amounts, rates)
def test_conversion_is_odd_and_monotone(amount: int, rate: Decimal) -> None:
    assert convert_minor(-amount, "USD", "EUR", rate) == -convert_minor(amount, "USD", "EUR", rate)
    assert convert_minor(amount + 1, "USD", "EUR", rate) >= convert_minor(
        amount, "USD", "EUR", rate
    )


@given(amounts, rates)
def test_rounding_mode_is_explicit(amount: int, rate: Decimal) -> None:
    down = convert_minor(abs(amount), "USD", "JPY", rate, ROUND_DOWN)
    even = convert_minor(abs(amount), "USD", "JPY", rate, ROUND_HALF_EVEN)
    assert 0 <= even - down <= 1


@given(rates, rates)
def test_cross_rate_via_eur_agrees_with_inverse(a: Decimal, b: Decimal) -> None:
    forward = cross_via_eur(a, b)
    backward = cross_via_eur(b, a)
    # both rounded to 10 places: their product is 1 within the rounding
    assert abs(forward * backward - 1) <= (forward + backward) * Decimal("1e-10")
    assert cross_via_eur(a, a) == 1


@given(rates)
def test_invert_round_trips_within_rounding(rate: Decimal) -> None:
    assert abs(invert(rate) * rate - 1) <= rate * Decimal("1e-10")


@given(st.integers(min_value=0, max_value=10**10), rates, rates)
def test_realized_difference_is_settled_minus_booked(
    amount: int, booked: Decimal, settled: Decimal
) -> None:
    diff = realized_fx_difference(amount, "USD", "EUR", booked, settled)
    assert diff == convert_minor(amount, "USD", "EUR", settled) - convert_minor(
        amount, "USD", "EUR", booked
    )
    if settled >= booked:
        assert diff >= 0
    assert realized_fx_difference(amount, "EUR", "EUR", booked, settled) == 0


def test_bad_rates_are_refused() -> None:
    for bad in (Decimal(0), Decimal(-1), Decimal("1e10"), Decimal("1.00000000001")):
        with pytest.raises(RateError):
            convert_minor(100, "USD", "EUR", bad)
    with pytest.raises(RateError):
        convert_minor(100, "EUR", "EUR", Decimal(2))


def test_ecb_daily_and_history_files_parse() -> None:
    rates_ = parse_ecb_xml(
        ecb(
            "<Cube time='2026-03-09'><Cube currency='USD' rate='1.0842'/>"
            "<Cube currency='JPY' rate='161.52'/></Cube>"
            "<Cube time='2026-03-06'><Cube currency='USD' rate='1.0811'/></Cube>"
        )
    )
    assert [(r.rate_date, r.currency, r.rate) for r in rates_] == [
        (date(2026, 3, 9), "USD", Decimal("1.0842")),
        (date(2026, 3, 9), "JPY", Decimal("161.52")),
        (date(2026, 3, 6), "USD", Decimal("1.0811")),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"<not-xml", "not well-formed"),
        (b"<a>hello</a>", "not an ECB file"),
        (ecb("<Cube time='2026-02-30'><Cube currency='USD' rate='1'/></Cube>"), "bad date"),
        (ecb("<Cube time='2026-03-09'><Cube currency='usd' rate='1'/></Cube>"), "currency"),
        (ecb("<Cube time='2026-03-09'><Cube currency='QQQ' rate='1'/></Cube>"), "unknown"),
        (ecb("<Cube time='2026-03-09'><Cube currency='USD' rate='abc'/></Cube>"), "bad rate"),
        (ecb("<Cube time='2026-03-09'><Cube currency='USD' rate='-1'/></Cube>"), "bad rate"),
        (
            ecb(
                "<Cube time='2026-03-09'><Cube currency='USD' rate='1'/>"
                "<Cube currency='USD' rate='2'/></Cube>"
            ),
            "twice",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
            "not allowed",
        ),
    ],
)
def test_malformed_ecb_files_are_refused_with_a_reason(content: bytes, message: str) -> None:
    with pytest.raises(EcbFormatError, match=message):
        parse_ecb_xml(content)


def test_pick_rate_prefers_latest_then_direct_then_manual() -> None:
    day = date(2026, 3, 9)
    rows = [
        {"base": "EUR", "quote": "USD", "rate": Decimal("1.08"), "rate_date": day, "source": "ecb"},
        {"base": "EUR", "quote": "GBP", "rate": Decimal("0.85"), "rate_date": day, "source": "ecb"},
        {
            "base": "EUR",
            "quote": "USD",
            "rate": Decimal("1.09"),
            "rate_date": day,
            "source": "manual",
        },
        {
            "base": "EUR",
            "quote": "USD",
            "rate": Decimal("1.20"),
            "rate_date": date(2026, 3, 10),
            "source": "ecb",
        },
    ]
    assert pick_rate("EUR", "USD", rows, day).source == "manual"
    assert pick_rate("EUR", "USD", rows, date(2026, 3, 10)).rate == Decimal("1.20")
    usd_eur = pick_rate("USD", "EUR", rows, day)
    assert (usd_eur.source, usd_eur.rate) == ("manual:inverse", invert(Decimal("1.09")))
    cross = pick_rate("USD", "GBP", rows, day)
    assert cross.source == "ecb:cross-EUR"
    assert cross.rate == cross_via_eur(Decimal("1.08"), Decimal("0.85"))
    assert pick_rate("USD", "CHF", rows, day) is None
    assert pick_rate("USD", "USD", [], day).rate == 1
