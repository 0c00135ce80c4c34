"""Pure exchange-rate rules: conversion, inversion, cross rates via EUR, realized FX
difference, and parsing of the ECB euro reference-rates XML.

A rate means ``1 base = rate quote``. Rates are ``Decimal`` with 10 decimal places at
most (the column's scale); anything derived (an inverse, a cross rate) is quantized
to 10 places half-even, explicitly. Amounts are integer minor units; a converted amount
is rounded once, to the target currency's minor unit, with the rounding mode given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from core.money import Money, currency

RATE_PLACES = Decimal("0.0000000001")  # 10 decimal places, the stored scale
MAX_RATE = Decimal("1e9")
ECB_NS = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"


class RateError(ValueError):
    """A rate that cannot be used (zero, negative, too large, or too precise)."""


def check_rate(rate: Decimal) -> Decimal:
    if not isinstance(rate, Decimal) or not rate.is_finite():
        raise RateError("a rate is a finite decimal number")
    if rate <= 0:
        raise RateError("a rate must be greater than zero")
    if rate >= MAX_RATE:
        raise RateError("a rate must be below 1,000,000,000")
    if rate != rate.quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN):
        raise RateError("a rate has at most 10 decimal places")
    return rate


def _quantize(value: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return value.quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN)


def invert(rate: Decimal) -> Decimal:
    """The rate of the opposite direction (quote → base), 10 places half-even."""
    with localcontext() as ctx:
        ctx.prec = 50
        return _quantize(Decimal(1) / check_rate(rate))


def cross_via_eur(eur_to_base: Decimal, eur_to_quote: Decimal) -> Decimal:
    """base → quote from two EUR reference rates (1 EUR = x base, 1 EUR = y quote)."""
    with localcontext() as ctx:
        ctx.prec = 50
        return _quantize(check_rate(eur_to_quote) / check_rate(eur_to_base))


def convert_minor(
    amount_minor: int,
    from_code: str,
    to_code: str,
    rate: Decimal,
    rounding: str = ROUND_HALF_EVEN,
) -> int:
    """Convert minor units of ``from_code`` into minor units of ``to_code``, rounded once."""
    if from_code == to_code:
        if rate != 1:
            raise RateError("a currency converts to itself at exactly 1")
        return amount_minor
    check_rate(rate)
    major = Money.from_minor(amount_minor, from_code).amount * rate
    return Money(major, currency(to_code)).round(rounding).to_minor()


def realized_fx_difference(
    amount_minor: int,
    document_currency: str,
    functional_currency: str,
    booked_rate: Decimal,
    settled_rate: Decimal,
    rounding: str = ROUND_HALF_EVEN,
) -> int:
    """Realized FX gain (+) or loss (-), in functional minor units, on settling
    ``amount_minor`` of a receivable booked at ``booked_rate`` (the rate frozen on the
    invoice) and settled at ``settled_rate`` (the rate on the payment's settlement date).

    Each side is converted and rounded once, then subtracted, so the difference equals
    exactly what the two postings hold (AR was carried at the booked value; cash
    arrives at the settled value). For payments: post the difference to
    ``FX_GAIN_LOSS`` (credit on a gain, debit on a loss) against AR in functional
    currency. Zero when the currencies are equal.
    """
    if document_currency == functional_currency:
        return 0
    booked = convert_minor(
        amount_minor, document_currency, functional_currency, booked_rate, rounding
    )
    settled = convert_minor(
        amount_minor, document_currency, functional_currency, settled_rate, rounding
    )
    return settled - booked


def realized_fx_minor(
    amount_minor: int,
    document_currency: str,
    functional_currency: str,
    booked_rate: Decimal,
    settled_rate: Decimal,
    rounding: str = ROUND_HALF_EVEN,
) -> int:
    """Realized FX gain (+) or loss (-), in functional minor units, on applying
    ``amount_minor`` (document currency) of money to an invoice booked at
    ``booked_rate`` and settled at ``settled_rate``: ``amount * (settled - booked)``,
    rounded ONCE to the functional currency's minor unit.

    Rounding once (not each side) keeps the sum over a payment split into n parts within
    one minor unit per part of the difference on the whole. Zero when the currencies
    are equal. This is what the ``fx_realized`` journal entries post (see
    ``core.fx.realized``)."""
    if document_currency == functional_currency:
        return 0
    check_rate(booked_rate)
    check_rate(settled_rate)
    with localcontext() as ctx:
        ctx.prec = 50
        major = Money.from_minor(amount_minor, document_currency).amount * (
            settled_rate - booked_rate
        )
    return Money(major, currency(functional_currency)).round(rounding).to_minor()


@dataclass(frozen=True, slots=True)
class EcbRate:
    rate_date: date
    currency: str  # 1 EUR = rate currency
    rate: Decimal


class EcbFormatError(ValueError):
    """The uploaded file is not a usable ECB reference-rates XML document."""


def parse_ecb_xml(data: bytes) -> list[EcbRate]:
    """Parse ``eurofxref-daily.xml`` / ``eurofxref-hist.xml`` content.

    All or nothing: any malformed element raises ``EcbFormatError`` with a message
    saying what and where; nothing is returned partially.
    """
    if not data.strip():
        raise EcbFormatError("the file is empty")
    try:
        root = ElementTree.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise EcbFormatError("the file uses XML features that are not allowed (DTD)") from exc
    except ElementTree.ParseError as exc:
        raise EcbFormatError(f"not well-formed XML ({exc})") from exc
    days = [el for el in root.iter(f"{{{ECB_NS}}}Cube") if "time" in el.attrib]
    if not days:
        raise EcbFormatError("no dated rate blocks (<Cube time=...>) found: not an ECB file")
    rates: list[EcbRate] = []
    seen: set[tuple[date, str]] = set()
    for day in days:
        try:
            when = date.fromisoformat(day.attrib["time"])
        except ValueError as exc:
            raise EcbFormatError(f"bad date {day.attrib['time']!r}") from exc
        for cube in day:
            code = cube.attrib.get("currency", "")
            raw = cube.attrib.get("rate", "")
            where = f"{when.isoformat()} {code or '?'}"
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise EcbFormatError(f"{where}: bad currency code {code!r}")
            try:
                currency(code)
            except ValueError as exc:
                raise EcbFormatError(f"{where}: unknown currency {code}") from exc
            try:
                value = check_rate(Decimal(raw))
            except (InvalidOperation, RateError) as exc:
                raise EcbFormatError(f"{where}: bad rate {raw!r}") from exc
            if (when, code) in seen:
                raise EcbFormatError(f"{where}: listed twice")
            seen.add((when, code))
            rates.append(EcbRate(when, code, value))
    if not rates:
        raise EcbFormatError("the file holds no rates")
    return rates
