"""Tax rules: tax is rounded once per line (half-even) and summed; treatments (domestic,
reverse charge with a valid EU VAT number, export, exemption); the circuit breaker."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.tax.providers import CircuitBreaker
from core.tax.rules import (
    REVERSE_CHARGE_NOTE,
    MissingRateError,
    TaxContext,
    TaxLineIn,
    compute,
    line_tax,
    valid_vat_id,
)

amounts = st.integers(min_value=-(10**11), max_value=10**11)
tax_rates = st.decimals(min_value=0, max_value=Decimal("0.3"), places=4)


@given(amounts, tax_rates, st.sampled_from(["EUR", "JPY", "KWD"]))
def test_line_tax_is_rounded_once_half_even(amount: int, rate: Decimal, code: str) -> None:
    tax = line_tax(amount, rate, code)
    exact = Decimal(amount) * rate  # in minor units
    assert tax == exact.to_integral_value(rounding=ROUND_HALF_EVEN)
    assert abs(tax - exact) <= Decimal("0.5")


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=20))
def test_invoice_tax_is_the_sum_of_rounded_lines(line_amounts: list[int]) -> None:
    result = compute(TaxContext("DE", "DE"), [TaxLineIn(a, "STD") for a in line_amounts], "EUR")
    assert result.tax_minor == sum(line_tax(a, Decimal("0.19"), "EUR") for a in line_amounts)
    # per-line rounding stays within half a cent per line of the unrounded total
    assert (
        abs(result.tax_minor - sum(line_amounts) * Decimal("0.19"))
        <= Decimal(len(line_amounts)) / 2
    )


def test_half_even_on_exact_halves() -> None:
    assert line_tax(50, Decimal("0.01"), "EUR") == 0  # 0.5 → 0
    assert line_tax(150, Decimal("0.01"), "EUR") == 2  # 1.5 → 2


@pytest.mark.parametrize(
    ("vat", "ok"),
    [
        ("DE136695976", True),
        ("FR40303265045", True),
        ("NL004495445B01", True),
        ("DE136695977", False),  # bad check digit
        ("FR00000000000", False),
        ("XX123", False),
        ("", False),
    ],
)
def test_vat_numbers_are_checked_for_format_and_checksum(vat: str, ok: bool) -> None:
    assert valid_vat_id(vat) is ok


def test_treatments() -> None:
    lines = [TaxLineIn(10000, "STD"), TaxLineIn(5000, "RED")]
    domestic = compute(TaxContext("DE", "DE"), lines, "EUR")
    assert [(x.rate, x.tax_minor) for x in domestic.lines] == [
        (Decimal("0.19"), 1900),
        (Decimal("0.07"), 350),
    ]
    rc = compute(TaxContext("DE", "FR", buyer_vat_id="FR40303265045"), lines, "EUR")
    assert (rc.tax_minor, rc.note, {x.tax_code for x in rc.lines}) == (
        0,
        REVERSE_CHARGE_NOTE,
        {"RC"},
    )
    no_vat = compute(TaxContext("DE", "FR", buyer_vat_id="FR00000000000"), lines, "EUR")
    assert no_vat.tax_minor == 2250  # an invalid VAT number: charged like a domestic sale
    export = compute(TaxContext("DE", "US"), lines, "EUR")
    assert (export.tax_minor, {x.tax_code for x in export.lines}) == (0, {"EXPORT"})
    exempt = compute(TaxContext("US", "US", exemption_ref="CERT-9"), lines, "USD")
    assert (exempt.status, exempt.tax_minor) == ("exempt", 0)
    ca = compute(TaxContext("US", "US", buyer_region="CA"), [TaxLineIn(10000)], "USD")
    assert ca.tax_minor == 725
    unknown_code = compute(TaxContext("DE", "DE"), [TaxLineIn(100, "LUXURY")], "EUR")
    assert (unknown_code.status, unknown_code.tax_minor) == ("estimated", 19)
    assert "LUXURY" in unknown_code.note
    with pytest.raises(MissingRateError):
        compute(TaxContext("JP", "JP"), [TaxLineIn(100, "STD")], "JPY")
    overridden = compute(
        TaxContext("DE", "DE"),
        [TaxLineIn(100, "LUXURY")],
        "EUR",
        {("DE", "", "LUXURY"): Decimal("0.5")},
    )
    assert overridden.tax_minor == 50


def test_circuit_breaker_opens_after_failures_and_half_opens_after_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert (breaker.allow(), breaker.state) == (False, "open")
    now[0] = 10.5
    assert (breaker.allow(), breaker.state) == (True, "half-open")
    breaker.success()
    assert breaker.state == "closed"
