"""Pure tax rules: rates by country/region/tax code, EU VAT-number validation, the
treatment of a sale (domestic, reverse charge, export, exempt) and line tax rounding.

Tax is computed per line on the line's rounded amount and rounded once, half-even, to
the currency's minor unit; the invoice's tax is the sum of its lines' tax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, localcontext

from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError

from core.money import currency

EU_COUNTRIES = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)
ZERO_CODES = frozenset({"ZERO", "EXEMPT", "RC", "EXPORT", "OUT"})
STANDARD = "STD"
REDUCED = "RED"

# Built-in rates, (country, region, tax code) → rate; the tax_rate table overrides them.
DEFAULT_RATES: Mapping[tuple[str, str, str], Decimal] = {
    ("AT", "", STANDARD): Decimal("0.20"),
    ("AT", "", REDUCED): Decimal("0.10"),
    ("BE", "", STANDARD): Decimal("0.21"),
    ("BE", "", REDUCED): Decimal("0.06"),
    ("DE", "", STANDARD): Decimal("0.19"),
    ("DE", "", REDUCED): Decimal("0.07"),
    ("DK", "", STANDARD): Decimal("0.25"),
    ("ES", "", STANDARD): Decimal("0.21"),
    ("ES", "", REDUCED): Decimal("0.10"),
    ("FI", "", STANDARD): Decimal("0.255"),
    ("FR", "", STANDARD): Decimal("0.20"),
    ("FR", "", REDUCED): Decimal("0.055"),
    ("IE", "", STANDARD): Decimal("0.23"),
    ("IT", "", STANDARD): Decimal("0.22"),
    ("IT", "", REDUCED): Decimal("0.10"),
    ("LU", "", STANDARD): Decimal("0.17"),
    ("NL", "", STANDARD): Decimal("0.21"),
    ("NL", "", REDUCED): Decimal("0.09"),
    ("PL", "", STANDARD): Decimal("0.23"),
    ("PT", "", STANDARD): Decimal("0.23"),
    ("SE", "", STANDARD): Decimal("0.25"),
    ("GB", "", STANDARD): Decimal("0.20"),
    ("US", "", STANDARD): Decimal(0),
    ("US", "CA", STANDARD): Decimal("0.0725"),
    ("US", "NY", STANDARD): Decimal("0.04"),
    ("US", "TX", STANDARD): Decimal("0.0625"),
}

REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)"
)
EXPORT_NOTE = "Supply of services outside the EU: not subject to EU VAT"


def valid_vat_id(vat_id: str) -> bool:
    """An EU VAT number with a valid format and check digits (python-stdnum); no
    online VIES check."""
    try:
        eu_vat.validate(vat_id or "")
    except ValidationError:
        return False
    return True


def line_tax(amount_minor: int, rate: Decimal, currency_code: str) -> int:
    """Tax of one line: amount * rate, rounded once, half-even, to the minor unit.

    Computed in minor units (amount_minor * rate, rounded to an integer), which is the
    same as rounding the major-unit product to the currency's exponent.
    """
    currency(currency_code)  # a known currency
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True  # the product is exact at this precision
        return int((Decimal(amount_minor) * rate).to_integral_value(ROUND_HALF_EVEN))


def lookup_rate(
    rates: Mapping[tuple[str, str, str], Decimal], country: str, region: str, tax_code: str
) -> Decimal | None:
    """Most specific rate first: (country, region, code), then (country, '', code)."""
    for key in ((country, region, tax_code), (country, "", tax_code)):
        if key in rates:
            return rates[key]
    return None


@dataclass(frozen=True, slots=True)
class TaxContext:
    seller_country: str
    buyer_country: str = ""
    buyer_region: str = ""
    buyer_vat_id: str = ""
    exemption_ref: str = ""  # certificate reference when the customer is exempt


@dataclass(frozen=True, slots=True)
class TaxLineIn:
    amount_minor: int
    tax_code: str = ""


@dataclass(frozen=True, slots=True)
class TaxLineOut:
    rate: Decimal
    tax_minor: int
    tax_code: str


@dataclass(frozen=True, slots=True)
class TaxResult:
    lines: tuple[TaxLineOut, ...]
    status: str  # calculated | exempt | estimated
    note: str = ""
    provider: str = "rules"

    @property
    def tax_minor(self) -> int:
        return sum(line.tax_minor for line in self.lines)


class MissingRateError(LookupError):
    """No rate is known for a country and tax code."""


def treatment(ctx: TaxContext) -> tuple[str, str]:
    """(kind, jurisdiction country): exempt, reverse_charge, export, out_of_scope or
    taxable (then the jurisdiction whose rates apply)."""
    seller, buyer = ctx.seller_country.upper(), (ctx.buyer_country or "").upper()
    if ctx.exemption_ref:
        return "exempt", seller
    if not buyer or buyer == seller:
        return "taxable", seller
    if seller in EU_COUNTRIES:
        if buyer in EU_COUNTRIES:
            if ctx.buyer_vat_id and valid_vat_id(ctx.buyer_vat_id):
                return "reverse_charge", buyer
            return "taxable", seller  # no valid VAT number: charged like a domestic sale
        return "export", buyer
    return "out_of_scope", buyer  # a non-EU seller has no nexus abroad here


def compute(
    ctx: TaxContext,
    lines: Sequence[TaxLineIn],
    currency_code: str,
    rates: Mapping[tuple[str, str, str], Decimal] = DEFAULT_RATES,
) -> TaxResult:
    """Tax of every line under the built-in rules (raises ``MissingRateError``)."""
    kind, country = treatment(ctx)
    if kind == "exempt":
        zero = tuple(TaxLineOut(Decimal(0), 0, "EXEMPT") for _ in lines)
        return TaxResult(zero, "exempt", f"Tax exempt: certificate {ctx.exemption_ref}")
    if kind == "reverse_charge":
        zero = tuple(TaxLineOut(Decimal(0), 0, "RC") for _ in lines)
        return TaxResult(zero, "calculated", REVERSE_CHARGE_NOTE)
    if kind in ("export", "out_of_scope"):
        code = "EXPORT" if kind == "export" else "OUT"
        zero = tuple(TaxLineOut(Decimal(0), 0, code) for _ in lines)
        return TaxResult(zero, "calculated", EXPORT_NOTE if kind == "export" else "")
    region = ctx.buyer_region if country == (ctx.buyer_country or country) else ""
    out = []
    unknown: set[str] = set()
    for line in lines:
        code = (line.tax_code or STANDARD).upper()
        if code in ZERO_CODES:
            out.append(TaxLineOut(Decimal(0), 0, code))
            continue
        rate = lookup_rate(rates, country, region, code)
        if rate is None:
            # A product tax code without a rate here: the standard rate, flagged estimated.
            rate = lookup_rate(rates, country, region, STANDARD)
            if rate is None:
                raise MissingRateError(f"no tax rate for {country} {code}")
            unknown.add(code)
        out.append(TaxLineOut(rate, line_tax(line.amount_minor, rate, currency_code), code))
    if unknown:
        note = f"No {country} rate for tax code(s) {', '.join(sorted(unknown))}: standard rate"
        return TaxResult(tuple(out), "estimated", note)
    return TaxResult(tuple(out), "calculated")
