"""The price book's stored form <-> the pure pricing rules (no I/O).

A ``price`` row stores its model's parameters as JSON, amounts as decimal strings in major
units (never floats), as documented on ``core.catalog.tables.Price``:

* flat: ``{"amount": "49.00"}`` (optional ``"charge_at_zero": false``)
* per_unit: ``{"unit_amount": "0.10"}`` (more decimals than the currency are fine)
* package: ``{"block_size": 100, "block_amount": "5.00"}``
* graduated / volume: ``{"tiers": [{"up_to": "1000", "unit_amount": "0.10",
  "flat_amount": "0"}, ..., {"up_to": null, "unit_amount": "0.05"}]}``

plus the row's ``minimum_minor`` (a floor for the period's line) and ``rounding`` (a name:
``half_even`` (default), ``half_up``, ``half_down``, ``up``, ``down``, ``ceiling``,
``floor``, ``05up``).

``definition_from_row`` turns a row into a ``pricing.PriceDefinition``; ``discount_from_row``
a discount row into a ``pricing.Discount``; ``parse_price_form`` / ``parse_discount_form``
turn what a person typed into the stored form, or raise ``ValidationFailed`` with one
message per field (every stored definition is checked by building it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
from typing import Any, Final

from core.catalog import pricing
from core.errors import ValidationFailed
from core.money import AmountParseError, Money, currency, parse_amount

MODELS: Final = ("flat", "per_unit", "package", "graduated", "volume")
MODEL_LABELS: Final = {
    "flat": "Flat fee",
    "per_unit": "Per unit",
    "package": "Package (per block of N units)",
    "graduated": "Tiered, graduated",
    "volume": "Tiered, volume",
}
ROUNDING_NAMES: Final = {
    "half_even": ROUND_HALF_EVEN,
    "half_up": ROUND_HALF_UP,
    "half_down": ROUND_HALF_DOWN,
    "up": ROUND_UP,
    "down": ROUND_DOWN,
    "ceiling": ROUND_CEILING,
    "floor": ROUND_FLOOR,
    "05up": ROUND_05UP,
}
INTERVALS: Final = {1: "month", 3: "quarter", 12: "year"}
DURATIONS: Final = ("once", "repeating", "forever")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DECIMAL = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,12})?$")
_MAX_BLOCK = 10**9
_MAX_TIERS = 20


@dataclass(frozen=True, slots=True)
class PriceRow:
    """The columns of a price row that define its amount."""

    model: str
    definition: Mapping[str, Any]
    currency: str
    minimum_minor: int | None = None
    rounding: str = "half_even"

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PriceRow:
        raw = row["definition"]
        data = json.loads(raw) if isinstance(raw, str) else raw
        return cls(
            model=row["model"],
            definition=data or {},
            currency=row["currency"],
            minimum_minor=row.get("minimum_minor"),
            rounding=row.get("rounding") or "half_even",
        )


def rounding_mode(name: str) -> str:
    """The ``decimal.ROUND_*`` constant for a stored rounding name."""
    try:
        return ROUNDING_NAMES[name]
    except KeyError:
        raise ValueError(f"unknown rounding {name!r}") from None


def interval_name(months: int) -> str:
    return INTERVALS.get(months, f"{months} months")


def _money(value: object, cur: str, what: str) -> Money:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise ValueError(f"{what} must be a decimal string such as 12.50, got {value!r}")
    return Money(Decimal(value), cur)


def _tiers(data: Mapping[str, Any], cur: str) -> tuple[pricing.Tier, ...]:
    raw = data.get("tiers")
    if not isinstance(raw, list) or not raw:
        raise ValueError("tiers must be a non-empty list")
    tiers = []
    for i, t in enumerate(raw, start=1):
        if not isinstance(t, Mapping):
            raise ValueError(f"tier {i} must be an object")
        up = t.get("up_to")
        up_to = None if up is None else _money(up, cur, f"tier {i} up_to").amount
        flat = t.get("flat_amount")
        fee = None if flat in (None, "", "0") else _money(flat, cur, f"tier {i} flat_amount")
        tiers.append(pricing.Tier(up_to, _money(t.get("unit_amount"), cur, f"tier {i}"), fee))
    return tuple(tiers)


def definition_from_row(row: PriceRow | Mapping[str, Any]) -> pricing.PriceDefinition:
    """The pricing definition a stored price describes (``ValueError``/``TypeError`` if it
    is not a valid one; prices are validated when created, so that means a corrupt row)."""
    p = row if isinstance(row, PriceRow) else PriceRow.of(row)
    cur, d, mode = p.currency, p.definition, rounding_mode(p.rounding)
    definition: pricing.PriceDefinition
    if p.model == "flat":
        at_zero = d.get("charge_at_zero", True)
        if not isinstance(at_zero, bool):
            raise ValueError("charge_at_zero must be true or false")
        definition = pricing.FlatPrice(_money(d.get("amount"), cur, "amount"), at_zero, mode)
    elif p.model == "per_unit":
        definition = pricing.PerUnitPrice(_money(d.get("unit_amount"), cur, "unit_amount"), mode)
    elif p.model == "package":
        size = d.get("block_size")
        if isinstance(size, bool) or not isinstance(size, int):
            raise ValueError("block_size must be a whole number")
        block = _money(d.get("block_amount"), cur, "block_amount")
        definition = pricing.PackagePrice(block, size, mode)
    elif p.model == "graduated":
        definition = pricing.GraduatedPrice(_tiers(d, cur), mode)
    elif p.model == "volume":
        definition = pricing.VolumePrice(_tiers(d, cur), mode)
    else:
        raise ValueError(f"unknown pricing model {p.model!r}")
    if p.minimum_minor is not None:
        definition = pricing.WithMinimum(definition, Money.from_minor(p.minimum_minor, cur))
    return definition


def discount_from_row(row: Mapping[str, Any]) -> pricing.Discount:
    """A ``pricing.Discount`` from a discount row (percent or amount; once/repeating/forever)."""
    periods = row.get("duration_periods") if row["duration"] == "repeating" else None
    if row["kind"] == "percent":
        return pricing.Discount(
            percent_off=Decimal(row["percent"]), duration=row["duration"], periods=periods
        )
    if row["kind"] == "amount":
        off = Money.from_minor(int(row["amount_minor"]), row["currency"])
        return pricing.Discount(amount_off=off, duration=row["duration"], periods=periods)
    raise ValueError(f"unknown discount kind {row['kind']!r}")


def describe_definition(row: PriceRow | Mapping[str, Any]) -> str:
    """A short human description, e.g. ``"49.00 EUR flat"``, ``"0.10 USD per unit"``."""
    p = row if isinstance(row, PriceRow) else PriceRow.of(row)
    d = p.definition
    if p.model == "flat":
        text = f"{d.get('amount')} {p.currency} flat"
    elif p.model == "per_unit":
        text = f"{d.get('unit_amount')} {p.currency} per unit"
    elif p.model == "package":
        text = f"{d.get('block_amount')} {p.currency} per {d.get('block_size')} units"
    else:
        parts = []
        for t in d.get("tiers", []):
            bound = "above" if t.get("up_to") is None else f"up to {t.get('up_to')}"
            fee = t.get("flat_amount")
            extra = f" + {fee}" if fee not in (None, "", "0") else ""
            parts.append(f"{bound}: {t.get('unit_amount')}{extra}")
        text = f"{MODEL_LABELS.get(p.model, p.model)} ({p.currency}; " + "; ".join(parts) + ")"
    if p.minimum_minor is not None:
        text += f", minimum {Money.from_minor(p.minimum_minor, p.currency).amount}"
    return text


# --------------------------------------------------------------------------- form input


def _field(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _unit_amount(text: str) -> str:
    """A non-negative decimal with up to 12 decimals (unit prices may be finer than cents)."""
    cleaned = text.replace(",", "")
    if not _DECIMAL.fullmatch(cleaned):
        raise ValueError("Enter an amount such as 0.10 (up to 12 decimals)")
    return str(Decimal(cleaned))


def _currency_amount(text: str, cur: str) -> str:
    try:
        return str(parse_amount(text, cur).amount)
    except AmountParseError as exc:
        raise ValueError(str(exc)) from None


def _whole(text: str, what: str, low: int, high: int) -> int:
    if not text.isdigit() or len(text) > 10:
        raise ValueError(f"Enter {what} as a whole number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what.capitalize()} must be between {low} and {high}")
    return value


def _parse_tiers(text: str, cur: str) -> list[dict[str, Any]]:
    """One tier per line: ``UP_TO UNIT_PRICE [FLAT_FEE]``; ``*`` as UP_TO = no upper bound."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise ValueError("Enter at least one tier, e.g. '1000 0.10' then '* 0.05'")
    if len(rows) > _MAX_TIERS:
        raise ValueError(f"At most {_MAX_TIERS} tiers")
    tiers = []
    for n, parts in enumerate(rows, start=1):
        if len(parts) not in (2, 3):
            raise ValueError(f"Tier {n}: write 'UP_TO UNIT_PRICE [FLAT_FEE]', e.g. '1000 0.10'")
        try:
            up_to = None if parts[0] in ("*", "inf") else _unit_amount(parts[0])
            tier: dict[str, Any] = {"up_to": up_to, "unit_amount": _unit_amount(parts[1])}
            if len(parts) == 3:
                tier["flat_amount"] = _currency_amount(parts[2], cur)
        except ValueError as exc:
            raise ValueError(f"Tier {n}: {exc}") from None
        tiers.append(tier)
    return tiers


def parse_price_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Validate a price form; returns the row's values (``model``, ``definition`` …).

    Fields: code, nickname, currency, interval_months, model, amount (flat), unit_amount
    (per_unit), block_size and block_amount (package), tiers (graduated/volume, one per
    line), minimum (optional), rounding, trial_days, metric, tax_code, billing_timing.
    """
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    code = _field(form, "code")
    if not _CODE.fullmatch(code):
        errors["code"] = "Use 1-64 letters, digits, '.', '_' or '-'"
    out["code"] = code
    out["nickname"] = _field(form, "nickname")[:200]
    cur = _field(form, "currency").upper()
    try:
        currency(cur)
    except ValueError:
        errors["currency"] = "Choose a known ISO 4217 currency code, e.g. EUR"
        cur = ""
    out["currency"] = cur
    try:
        out["interval_months"] = _whole(_field(form, "interval_months"), "the interval", 1, 36)
    except ValueError as exc:
        errors["interval_months"] = str(exc)
    model = _field(form, "model")
    if model not in MODELS:
        errors["model"] = "Choose a pricing model"
    out["model"] = model
    rounding = _field(form, "rounding") or "half_even"
    if rounding not in ROUNDING_NAMES:
        errors["rounding"] = "Choose a rounding mode"
    out["rounding"] = rounding
    definition: dict[str, Any] = {}
    if cur and model in MODELS:
        try:
            if model == "flat":
                definition = {"amount": _currency_amount(_field(form, "amount"), cur)}
            elif model == "per_unit":
                definition = {"unit_amount": _unit_amount(_field(form, "unit_amount"))}
            elif model == "package":
                try:
                    size = _whole(_field(form, "block_size"), "the block size", 1, _MAX_BLOCK)
                except ValueError as exc:
                    errors["block_size"] = str(exc)
                    size = 1
                definition = {
                    "block_size": size,
                    "block_amount": _currency_amount(_field(form, "block_amount"), cur),
                }
            else:
                definition = {"tiers": _parse_tiers(_field(form, "tiers"), cur)}
        except ValueError as exc:
            field = {
                "flat": "amount",
                "per_unit": "unit_amount",
                "package": "block_amount",
            }.get(model, "tiers")
            errors[field] = str(exc)
    out["definition"] = definition
    minimum = _field(form, "minimum")
    out["minimum_minor"] = None
    if minimum and cur:
        try:
            out["minimum_minor"] = parse_amount(minimum, cur).to_minor()
        except AmountParseError as exc:
            errors["minimum"] = str(exc)
    try:
        out["trial_days"] = _whole(_field(form, "trial_days") or "0", "trial days", 0, 730)
    except ValueError as exc:
        errors["trial_days"] = str(exc)
    metric = _field(form, "metric")
    if metric and not _CODE.fullmatch(metric):
        errors["metric"] = "Use 1-64 letters, digits, '.', '_' or '-'"
    out["metric"] = metric
    out["tax_code"] = _field(form, "tax_code")[:32]
    timing = _field(form, "billing_timing") or "advance"
    if timing not in ("advance", "arrears"):
        errors["billing_timing"] = "Choose in advance or in arrears"
    out["billing_timing"] = timing
    own = {_model_field(model), "block_size", "minimum", "rounding", "currency", "model"}
    if definition and not own & errors.keys():
        try:
            definition_from_row(PriceRow(model, definition, cur, out["minimum_minor"], rounding))
        except (ValueError, TypeError) as exc:
            key = "minimum" if "minimum" in str(exc) else _model_field(model)
            errors[key] = _sentence(str(exc))
    if errors:
        raise ValidationFailed(errors)
    return out


def _model_field(model: str) -> str:
    return {"flat": "amount", "per_unit": "unit_amount", "package": "block_amount"}.get(
        model, "tiers"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def parse_discount_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Validate a discount form: code, name, kind (percent|amount), percent or amount +
    currency, duration (once|repeating|forever), duration_periods (repeating only)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"percent": None, "amount_minor": None, "currency": ""}
    code = _field(form, "code")
    if not _CODE.fullmatch(code):
        errors["code"] = "Use 1-64 letters, digits, '.', '_' or '-'"
    out["code"] = code
    name = _field(form, "name")
    if not name or len(name) > 200:
        errors["name"] = "Enter a name (up to 200 characters)"
    out["name"] = name
    kind = _field(form, "kind")
    out["kind"] = kind
    if kind == "percent":
        text = _field(form, "percent")
        if not _DECIMAL.fullmatch(text) or not Decimal(0) < Decimal(text) <= Decimal(100):
            errors["percent"] = "Enter a percentage above 0 and at most 100, e.g. 12.5"
        else:
            out["percent"] = Decimal(text)
    elif kind == "amount":
        cur = _field(form, "currency").upper()
        try:
            currency(cur)
            out["currency"] = cur
            money = parse_amount(_field(form, "amount"), cur)
            if not money.is_positive():
                raise AmountParseError("Enter an amount above zero")
            out["amount_minor"] = money.to_minor()
        except AmountParseError as exc:
            errors["amount"] = str(exc)
        except ValueError:
            errors["currency"] = "Choose a known ISO 4217 currency code, e.g. EUR"
    else:
        errors["kind"] = "Choose percentage or fixed amount"
    duration = _field(form, "duration")
    out["duration"] = duration
    out["duration_periods"] = None
    if duration not in DURATIONS:
        errors["duration"] = "Choose once, for a number of periods, or forever"
    elif duration == "repeating":
        try:
            out["duration_periods"] = _whole(
                _field(form, "duration_periods"), "the number of periods", 1, 120
            )
        except ValueError as exc:
            errors["duration_periods"] = str(exc)
    if errors:
        raise ValidationFailed(errors)
    return out
