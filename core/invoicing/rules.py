"""Pure invoicing rules: line pricing (rounded once, at line level), document numbers,
due dates, aging buckets."""

from __future__ import annotations

import re
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
    kind: str = "manual"  # recurring, usage, proration, discount, milestone, correction
    revenue_account: str = "4000"  # 4000 revenue, 2300 deferred revenue


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


# --- Document numbers ---------------------------------------------------------------

DEFAULT_NUMBER_FORMAT = "{doc}-{entity}-{year}-{seq:06}"
DOCUMENT_CODES = {"invoice": "INV", "credit_memo": "CN"}
_TOKEN = re.compile(r"\{([a-z]+)(?::(0?\d{1,2}))?\}")
_TOKENS = frozenset({"doc", "entity", "jurisdiction", "year", "yy", "seq"})


class NumberFormatError(ValueError):
    """A number format that could not produce unique, readable numbers."""


def validate_number_format(fmt: str) -> str:
    """Return the format if usable, else raise ``NumberFormatError`` saying why.

    Allowed tokens: ``{doc}`` (INV, CN), ``{entity}`` (issuing entity code),
    ``{jurisdiction}``, ``{year}`` (2026) or ``{yy}`` (26), ``{seq}`` or ``{seq:06}``
    (zero-padded to 6). ``{doc}``, ``{entity}``, a year and ``{seq}`` are required so
    that two series can never produce the same number. Literal text: letters, digits,
    ``-``, ``/``, ``_``, ``.``; at most 64 characters.
    """
    if not fmt or len(fmt) > 64:
        raise NumberFormatError("a format has 1 to 64 characters")
    found = [m.group(1) for m in _TOKEN.finditer(fmt)]
    unknown = sorted(set(found) - _TOKENS)
    if unknown:
        raise NumberFormatError(f"unknown token(s): {', '.join(unknown)}")
    for m in _TOKEN.finditer(fmt):
        if m.group(2) is not None and m.group(1) != "seq":
            raise NumberFormatError("only {seq} takes a width, e.g. {seq:06}")
    literal = _TOKEN.sub("", fmt)
    if not re.fullmatch(r"[A-Za-z0-9\-/_.]*", literal):
        raise NumberFormatError("literal text may only use letters, digits and - / _ .")
    missing = [t for t in ("doc", "entity", "seq") if t not in found]
    if "year" not in found and "yy" not in found:
        missing.append("year")
    if missing:
        raise NumberFormatError(f"missing required token(s): {', '.join(missing)}")
    if found.count("seq") != 1:
        raise NumberFormatError("{seq} must appear exactly once")
    return fmt


def render_number(
    fmt: str, *, doc: str, entity: str, jurisdiction: str, year: int, sequence: int
) -> str:
    """Render a document number, e.g. ``INV-DE-2026-000123`` with the default format."""
    if sequence < 1:
        raise ValueError("sequences start at 1")
    values = {
        "doc": doc,
        "entity": entity,
        "jurisdiction": jurisdiction,
        "year": f"{year:04d}",
        "yy": f"{year % 100:02d}",
    }

    def substitute(m: re.Match[str]) -> str:
        name, width = m.group(1), m.group(2)
        if name == "seq":
            return f"{sequence:0{int(width)}d}" if width else str(sequence)
        return values[name]

    return _TOKEN.sub(substitute, fmt)


# --- Approval -------------------------------------------------------------------------


def approval_required(
    *, total_functional_minor: int, threshold_minor: int | None, account_flag: bool
) -> str:
    """Why an invoice needs a staff approval before finalizing ('' when it does not)."""
    if account_flag:
        return "the billing account requires approval of every invoice"
    if threshold_minor is not None and abs(total_functional_minor) >= threshold_minor:
        return "the amount reaches the issuing entity's approval threshold"
    return ""
