"""Pure pricing rules: quantity -> line amount, for every catalog pricing model.

No I/O, no tables: frozen price definitions (plain values) and functions over them. The
services that load prices and write invoice lines call these.

Rules
-----
* **Money in, Money out, never float.** Prices are ``core.money.Money`` (which refuses
  floats); quantities are ``int`` or ``Decimal`` (metered usage may be fractional, e.g.
  ``Decimal("12.5")`` GB). A ``float`` (or ``bool``, or ``str``) quantity raises
  ``TypeError``; a negative, NaN or infinite quantity raises ``ValueError``.
* **Rounded once, at line level.** Every model first computes the *exact* amount (Decimal
  arithmetic in ``core.money``'s exact context: tier subtotals, package blocks and flat
  fees are never rounded on their own; a result that would need more than 50 significant
  digits raises ``decimal.Inexact`` instead of rounding silently), then rounds it **once**
  to the currency's minor unit with the price's ``rounding`` mode (a ``decimal.ROUND_*``
  constant, ``ROUND_HALF_EVEN`` by default). ``price()`` and the model-specific functions
  return that rounded line amount; ``price_exact()`` returns the unrounded amount for a
  caller that must keep multiplying before its own single rounding.
* **Unit prices may carry more decimals than the currency** (``0.0125 USD`` per API call):
  ``1000 x 0.0125 = 12.50``; ``3 x 0.0125 = 0.0375 -> 0.04`` (never ``3 x 0.01``).

Models
------
* ``FlatPrice(amount)``: the amount regardless of quantity. By default it is charged even
  for quantity 0 (a recurring flat fee); ``charge_at_zero=False`` makes quantity 0 free.
* ``PerUnitPrice(unit_price)``: ``unit_price x quantity``.
* ``PackagePrice(package_price, package_size)``: ``package_price`` per started block of
  ``package_size`` units: ``blocks = ceil(quantity / package_size)``; quantity 0 -> 0.
* ``GraduatedPrice(tiers)``: each unit is priced at the tier it falls in. A ``Tier`` has an
  inclusive upper bound ``up_to`` (``None`` = unbounded, required for the last tier and only
  there); tier *i* covers ``(up_to[i-1], up_to[i]]``. For fractional quantities the part of
  the quantity inside each tier is priced at that tier. A tier's optional ``flat_fee`` is
  added once when any quantity falls into the tier. Monotone non-decreasing in quantity.
* ``VolumePrice(tiers)``: every unit is priced at the single tier the *total* quantity falls
  in (the first tier with ``quantity <= up_to``), plus that tier's ``flat_fee``. Not
  monotone (crossing a bound may lower the total): that is the model.
* For both tiered models quantity 0 costs 0 (no flat fee); use a ``FlatPrice`` line or a
  minimum for a fee that is always due. On the first tier both models agree.
* ``WithMinimum(price, minimum)``: the line amount is ``max(amount, minimum)``: a floor for
  the period, which never lowers a charge. ``apply_minimum()`` does the same for any amount.
* ``Discount``: percentage (``percent_off`` in 0..100) or fixed (``amount_off``) reduction of
  a line, never below zero. ``discount_amount()`` is the reduction (rounded once with the
  discount's rounding mode, for a separate discount line); ``apply_discount()`` the line after
  it. The duration (``once`` / ``repeating`` for N periods / ``forever``) is data, read with
  ``Discount.applies_in_period(n)``. Composition order (minimum, discount) is the invoice's
  choice; each function takes and returns rounded amounts, so nothing is rounded twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction
from typing import Final, Literal, TypeAlias

from core.money import ROUNDING_MODES, Currency, CurrencyMismatchError, Money, check_rounding

__all__ = [
    "ROUNDING_MODES",
    "Discount",
    "FlatPrice",
    "GraduatedPrice",
    "PackagePrice",
    "PerUnitPrice",
    "PriceDefinition",
    "Quantity",
    "Tier",
    "VolumePrice",
    "WithMinimum",
    "apply_discount",
    "apply_minimum",
    "check_quantity",
    "check_rounding",
    "discount_amount",
    "flat_amount",
    "graduated_amount",
    "package_amount",
    "per_unit_amount",
    "price",
    "price_exact",
    "volume_amount",
    "volume_tier",
]

Quantity: TypeAlias = Decimal | int

# Quantity arithmetic (tier widths): exact or raise, never a silent rounding.
_EXACT: Final = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact]
)
_ZERO: Final = Decimal(0)


# --------------------------------------------------------------------------- validation


def _number(value: object, what: str) -> Decimal:
    """A finite Decimal from an int or Decimal; float, bool and anything else is a TypeError."""
    if isinstance(value, float):
        raise TypeError(f"{what} must not be a float (got {value!r}); use Decimal or int")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{what} must be a Decimal or int, got {type(value).__name__}")
    result = Decimal(value) if isinstance(value, int) else value
    if not result.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return result


def check_quantity(quantity: object) -> Decimal:
    """Validate a quantity (``int`` or ``Decimal``, finite, ``>= 0``) and return it as Decimal."""
    value = _number(quantity, "quantity")
    if value < 0:
        raise ValueError(f"quantity must be zero or more, got {quantity}")
    return value.copy_abs() if value.is_zero() else value  # no -0


def _money(value: object, what: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, Money):
        raise TypeError(f"{what} must be Money, got {type(value).__name__}")
    if value.is_negative():
        raise ValueError(f"{what} must not be negative, got {value}")


def _same_currency(expected: Currency, value: Money | None, what: str) -> None:
    if value is not None and value.currency != expected:
        raise CurrencyMismatchError(
            f"{what} is in {value.currency.code} but the price is in {expected.code}"
        )


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True, slots=True)
class FlatPrice:
    """A fixed amount per period, regardless of quantity.

    ``charge_at_zero=True`` (default): charged even when the quantity is 0 (a recurring flat
    fee). ``False``: quantity 0 costs nothing, any positive quantity costs ``amount``.
    """

    amount: Money
    charge_at_zero: bool = True
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        _money(self.amount, "flat amount")
        if not isinstance(self.charge_at_zero, bool):
            raise TypeError("charge_at_zero must be a bool")
        check_rounding(self.rounding)

    @property
    def currency(self) -> Currency:
        return self.amount.currency


@dataclass(frozen=True, slots=True)
class PerUnitPrice:
    """``unit_price x quantity``; the unit price may carry more decimals than the currency."""

    unit_price: Money
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        _money(self.unit_price, "unit price")
        check_rounding(self.rounding)

    @property
    def currency(self) -> Currency:
        return self.unit_price.currency


@dataclass(frozen=True, slots=True)
class PackagePrice:
    """``package_price`` per started block of ``package_size`` units (blocks rounded up)."""

    package_price: Money
    package_size: int
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        _money(self.package_price, "package price")
        if isinstance(self.package_size, bool) or not isinstance(self.package_size, int):
            raise TypeError(f"package size must be an int, got {type(self.package_size).__name__}")
        if self.package_size < 1:
            raise ValueError(f"package size must be at least 1, got {self.package_size}")
        check_rounding(self.rounding)

    @property
    def currency(self) -> Currency:
        return self.package_price.currency


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier: units up to and including ``up_to`` (``None`` = unbounded, last tier only).

    ``unit_price`` applies to each unit priced in this tier; ``flat_fee`` (optional) is added
    once when the tier is used.
    """

    up_to: Quantity | None
    unit_price: Money
    flat_fee: Money | None = None

    def __post_init__(self) -> None:
        if self.up_to is not None:
            bound = _number(self.up_to, "tier upper bound")
            if bound <= 0:
                raise ValueError(f"tier upper bound must be greater than zero, got {bound}")
            object.__setattr__(self, "up_to", bound)
        _money(self.unit_price, "tier unit price")
        _money(self.flat_fee, "tier flat fee", allow_none=True)
        _same_currency(self.unit_price.currency, self.flat_fee, "tier flat fee")


def _check_tiers(tiers: object) -> tuple[Tier, ...]:
    if isinstance(tiers, str | bytes) or not isinstance(tiers, Sequence):
        raise TypeError("tiers must be a sequence of Tier")
    result = tuple(tiers)
    if not result:
        raise ValueError("a tiered price needs at least one tier")
    for tier in result:
        if not isinstance(tier, Tier):
            raise TypeError(f"tiers must be Tier instances, got {type(tier).__name__}")
    cur = result[0].unit_price.currency
    for index, tier in enumerate(result, start=1):
        _same_currency(cur, tier.unit_price, f"tier {index} unit price")
        if tier.up_to is None and index != len(result):
            raise ValueError(f"only the last tier may be unbounded (tier {index} has up_to=None)")
    if result[-1].up_to is not None:
        raise ValueError("the last tier must be unbounded (up_to=None)")
    bounds = [t.up_to for t in result[:-1]]
    for index in range(1, len(bounds)):
        if bounds[index] <= bounds[index - 1]:  # type: ignore[operator]
            raise ValueError(
                f"tier upper bounds must be strictly increasing: tier {index + 1} "
                f"({bounds[index]}) is not above tier {index} ({bounds[index - 1]})"
            )
    return result


@dataclass(frozen=True, slots=True)
class GraduatedPrice:
    """Tiered, graduated: each unit at the price of the tier it falls in (+ tier flat fees)."""

    tiers: tuple[Tier, ...]
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", _check_tiers(self.tiers))
        check_rounding(self.rounding)

    @property
    def currency(self) -> Currency:
        return self.tiers[0].unit_price.currency


@dataclass(frozen=True, slots=True)
class VolumePrice:
    """Tiered, volume: all units at the tier the total quantity falls in (+ its flat fee)."""

    tiers: tuple[Tier, ...]
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", _check_tiers(self.tiers))
        check_rounding(self.rounding)

    @property
    def currency(self) -> Currency:
        return self.tiers[0].unit_price.currency


@dataclass(frozen=True, slots=True)
class WithMinimum:
    """``price`` with a floor: the line amount is at least ``minimum`` (a rounded amount)."""

    price: PriceDefinition
    minimum: Money

    def __post_init__(self) -> None:
        if not isinstance(self.price, _MODELS):
            raise TypeError(f"unknown price definition {type(self.price).__name__}")
        _money(self.minimum, "minimum")
        if not self.minimum.is_rounded():
            raise ValueError(f"minimum must be a whole number of minor units, got {self.minimum}")
        _same_currency(self.price.currency, self.minimum, "minimum")

    @property
    def currency(self) -> Currency:
        return self.price.currency

    @property
    def rounding(self) -> str:
        return self.price.rounding


PriceDefinition: TypeAlias = (
    FlatPrice | PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice | WithMinimum
)
_MODELS: Final = (FlatPrice, PerUnitPrice, PackagePrice, GraduatedPrice, VolumePrice, WithMinimum)


# --------------------------------------------------------------------------- exact amounts


def _flat_exact(p: FlatPrice, q: Decimal) -> Money:
    if q.is_zero() and not p.charge_at_zero:
        return Money.zero(p.currency)
    return p.amount


def _per_unit_exact(p: PerUnitPrice, q: Decimal) -> Money:
    return p.unit_price * q


def _package_blocks(q: Decimal, size: int) -> int:
    return math.ceil(Fraction(q) / size)  # exact: no decimal division


def _package_exact(p: PackagePrice, q: Decimal) -> Money:
    return p.package_price * _package_blocks(q, p.package_size)


def _graduated_exact(p: GraduatedPrice, q: Decimal) -> Money:
    total = Money.zero(p.currency)
    lower = _ZERO
    for tier in p.tiers:
        if q <= lower:
            break
        upper = q if tier.up_to is None else min(q, tier.up_to)
        total = total + tier.unit_price * _EXACT.subtract(upper, lower)  # type: ignore[arg-type]
        if tier.flat_fee is not None:
            total = total + tier.flat_fee
        if tier.up_to is None:
            break
        lower = tier.up_to  # type: ignore[assignment]
    return total


def volume_tier(tiers: Sequence[Tier], quantity: Decimal) -> Tier:
    """The tier a total ``quantity`` falls in: the first with ``quantity <= up_to``."""
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return tier
    raise ValueError("the last tier must be unbounded")  # unreachable for validated tiers


def _volume_exact(p: VolumePrice, q: Decimal) -> Money:
    if q.is_zero():
        return Money.zero(p.currency)
    tier = volume_tier(p.tiers, q)
    total = tier.unit_price * q
    return total if tier.flat_fee is None else total + tier.flat_fee


def price_exact(definition: PriceDefinition, quantity: Quantity) -> Money:
    """The exact, **unrounded** amount for ``quantity`` (may carry extra precision).

    ``price()`` is ``price_exact(...).round(definition.rounding)``. Use this only when the
    amount is an intermediate value that will be rounded once later.
    """
    q = check_quantity(quantity)
    if isinstance(definition, FlatPrice):
        return _flat_exact(definition, q)
    if isinstance(definition, PerUnitPrice):
        return _per_unit_exact(definition, q)
    if isinstance(definition, PackagePrice):
        return _package_exact(definition, q)
    if isinstance(definition, GraduatedPrice):
        return _graduated_exact(definition, q)
    if isinstance(definition, VolumePrice):
        return _volume_exact(definition, q)
    if isinstance(definition, WithMinimum):
        inner = price_exact(definition.price, q)
        return inner if inner >= definition.minimum else definition.minimum
    raise TypeError(f"unknown price definition {type(definition).__name__}")


# --------------------------------------------------------------------------- line amounts


def price(definition: PriceDefinition, quantity: Quantity) -> Money:
    """The line amount for ``quantity``: exact amount rounded once (price's rounding mode)."""
    return price_exact(definition, quantity).round(definition.rounding)


def _require(definition: object, kind: type) -> None:
    if not isinstance(definition, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(definition).__name__}")


def flat_amount(definition: FlatPrice, quantity: Quantity = 0) -> Money:
    """Flat fee (rounded once); 0 for quantity 0 only if ``charge_at_zero`` is false."""
    _require(definition, FlatPrice)
    return price(definition, quantity)


def per_unit_amount(definition: PerUnitPrice, quantity: Quantity) -> Money:
    """``round(unit_price x quantity)``: rounded once, never per unit."""
    _require(definition, PerUnitPrice)
    return price(definition, quantity)


def package_amount(definition: PackagePrice, quantity: Quantity) -> Money:
    """``round(package_price x ceil(quantity / package_size))``."""
    _require(definition, PackagePrice)
    return price(definition, quantity)


def graduated_amount(definition: GraduatedPrice, quantity: Quantity) -> Money:
    """Sum over tiers of (units in tier x tier price + tier flat fee if used), rounded once."""
    _require(definition, GraduatedPrice)
    return price(definition, quantity)


def volume_amount(definition: VolumePrice, quantity: Quantity) -> Money:
    """``round(quantity x price of the tier the quantity falls in + its flat fee)``."""
    _require(definition, VolumePrice)
    return price(definition, quantity)


# --------------------------------------------------------------------------- minimum


def apply_minimum(amount: Money, minimum: Money | None) -> Money:
    """``max(amount, minimum)``: a floor that never lowers a charge (``None`` = no minimum)."""
    if not isinstance(amount, Money):
        raise TypeError(f"amount must be Money, got {type(amount).__name__}")
    if minimum is None:
        return amount
    _money(minimum, "minimum")
    _same_currency(amount.currency, minimum, "minimum")
    return amount if amount >= minimum else minimum


# --------------------------------------------------------------------------- discounts

DiscountDuration: TypeAlias = Literal["once", "repeating", "forever"]
_DURATIONS: Final = ("once", "repeating", "forever")
_HUNDRED: Final = Decimal(100)


@dataclass(frozen=True, slots=True)
class Discount:
    """A percentage or fixed-amount reduction of a line, and how long it lasts.

    Exactly one of ``percent_off`` (``int``/``Decimal`` in 0..100, e.g. ``Decimal("12.5")``)
    or ``amount_off`` (rounded ``Money``, >= 0) is set. ``duration``: ``"once"`` (the first
    period only), ``"repeating"`` (``periods`` consecutive periods, ``periods >= 1``) or
    ``"forever"``. ``rounding`` rounds a percentage discount's amount (once, per line).
    """

    percent_off: Decimal | int | None = None
    amount_off: Money | None = None
    duration: DiscountDuration = "once"
    periods: int | None = None
    rounding: str = ROUND_HALF_EVEN

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a discount needs exactly one of percent_off or amount_off")
        if self.percent_off is not None:
            pct = _number(self.percent_off, "percent_off")
            if not _ZERO <= pct <= _HUNDRED:
                raise ValueError(f"percent_off must be between 0 and 100, got {pct}")
            object.__setattr__(self, "percent_off", pct)
        if self.amount_off is not None:
            _money(self.amount_off, "amount_off")
            if not self.amount_off.is_rounded():
                raise ValueError(
                    f"amount_off must be a whole number of minor units, got {self.amount_off}"
                )
        if self.duration not in _DURATIONS:
            raise ValueError(f"duration must be one of {', '.join(_DURATIONS)}")
        if self.duration == "repeating":
            if isinstance(self.periods, bool) or not isinstance(self.periods, int):
                raise TypeError("a repeating discount needs periods as an int")
            if self.periods < 1:
                raise ValueError(f"periods must be at least 1, got {self.periods}")
        elif self.periods is not None:
            raise ValueError(f"periods is only for a repeating discount, not {self.duration!r}")
        check_rounding(self.rounding)

    def applies_in_period(self, n: int) -> bool:
        """Does the discount apply to period ``n``? (0 = the first period it applies to.)

        once: ``n == 0``; repeating: ``n < periods``; forever: always.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"period index must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"period index must be zero or more, got {n}")
        if self.duration == "once":
            return n == 0
        if self.duration == "repeating":
            assert self.periods is not None
            return n < self.periods
        return True


def discount_amount(amount: Money, discount: Discount) -> Money:
    """The reduction ``discount`` gives on a line of ``amount`` (rounded, ``0 <= r <= amount``).

    Percentage: ``round(amount x percent_off / 100)`` with the discount's rounding mode.
    Fixed: ``min(amount_off, amount)``. ``amount`` must be a rounded, non-negative line amount.
    """
    if not isinstance(discount, Discount):
        raise TypeError(f"expected a Discount, got {type(discount).__name__}")
    _money(amount, "discounted amount")
    if not amount.is_rounded():
        raise ValueError(f"discounts apply to rounded line amounts, got {amount}; round first")
    if discount.amount_off is not None:
        _same_currency(amount.currency, discount.amount_off, "amount_off")
        off = discount.amount_off
    else:
        assert isinstance(discount.percent_off, Decimal)
        share = _EXACT.divide(discount.percent_off, _HUNDRED)
        off = (amount * share).round(discount.rounding)
    return off if off <= amount else amount


def apply_discount(amount: Money, discount: Discount) -> Money:
    """``amount - discount_amount(amount, discount)``: never below zero."""
    return amount - discount_amount(amount, discount)
