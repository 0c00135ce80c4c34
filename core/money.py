"""Money and currencies for Ledgerline.

Rules this module enforces (and every caller should follow):

* **Decimal only, never float.** ``Money`` accepts ``Decimal``, ``int`` or ``str`` amounts;
  a ``float`` anywhere (amount, multiplier, weight) raises ``TypeError``. Arithmetic runs in a
  private 50-digit decimal context that traps ``Inexact``, so ``+``, ``-`` and ``*`` are
  exact or raise ``decimal.Inexact`` -- they never round silently.
* **One currency at a time.** Adding, subtracting or ordering two amounts of different
  currencies raises ``CurrencyMismatchError`` (a ``ValueError``). ``==`` between different
  currencies is simply ``False`` so ``Money`` stays usable in sets and dicts.
* **Explicit rounding, half-even by default.** An amount may carry more precision than its
  currency (unit prices, per-unit rates, tax bases). ``Money.round()`` quantizes to the
  currency's minor unit using ``ROUND_HALF_EVEN`` unless another ``decimal`` rounding mode is
  given. Round **once, at line level** (quantity x unit price -> round -> line total) and then
  only add rounded lines; never round partial sums again.
* **Storage as integer minor units.** Persist ``money.to_minor()`` (cents, fils, yen...) with
  the currency code and load with ``Money.from_minor()``. ``to_minor()`` refuses an amount
  that is not already a whole number of minor units: rounding must be explicit.
* **Splitting sums exactly.** ``allocate()`` / ``split_evenly()`` split a rounded amount into
  parts that add up exactly to the total; leftover minor units go to the largest remainders
  (ties to the earlier index), so results are deterministic. Negative totals mirror positive.
* **No truthiness.** ``bool(money)`` raises ``TypeError``: "is it zero?" and "is it present?"
  are different questions, so use ``money.is_zero()`` (or compare with ``None``) explicitly.
* **Currency exponents** come from Babel's CLDR data, except where ISO 4217 defines a
  different number of minor units (e.g. IQD has 3, ISO; CLDR says 0): ISO wins.
* **Display** via ``format_money()`` (Babel, locale aware) never rounds: an amount that
  carries extra precision shows it. ``parse_amount()`` reads user input such as
  ``"1,234.50"`` and rejects anything it cannot read exactly.

This module is pure: no I/O, no global mutable state beyond caches.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
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
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from functools import cache, lru_cache
from typing import Final

from babel import Locale
from babel.numbers import NumberPattern, get_currency_precision, list_currencies

__all__ = [
    "AmountParseError",
    "Currency",
    "CurrencyMismatchError",
    "Money",
    "allocate",
    "currency",
    "format_money",
    "parse_amount",
    "split_evenly",
    "sum_money",
]

# ISO 4217 minor units where they differ from (or must not depend on) Babel/CLDR data.
# CLDR records the digits used in practice (cash); ISO defines the accounting unit.
_ISO_EXPONENTS: Final[dict[str, int]] = {
    # Pinned by policy (Babel currently agrees, but these must never drift).
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
    # ISO 4217 differs from CLDR.
    "IQD": 3,
    "AFN": 2,
    "ALL": 2,
    "IRR": 2,
    "KPW": 2,
    "LAK": 2,
    "LBP": 2,
    "MGA": 2,
    "MMK": 2,
    "RSD": 2,
    "SLL": 2,
    "SOS": 2,
    "SYP": 2,
    "YER": 2,
}

ROUNDING_MODES: Final[frozenset[str]] = frozenset(
    {
        ROUND_05UP,
        ROUND_CEILING,
        ROUND_DOWN,
        ROUND_FLOOR,
        ROUND_HALF_DOWN,
        ROUND_HALF_EVEN,
        ROUND_HALF_UP,
        ROUND_UP,
    }
)

_PRECISION: Final = 50
# Arithmetic context: exact or raise (Inexact), never a silent rounding.
_EXACT: Final = Context(
    prec=_PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
# Quantize context: rounding is the point, but overflowing the precision still raises.
_QUANTIZE: Final = Context(
    prec=_PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)

_CODE_RE: Final = re.compile(r"[A-Z]{3}")


class CurrencyMismatchError(ValueError):
    """Raised when two amounts of different currencies are combined or ordered."""


class AmountParseError(ValueError):
    """Raised by ``parse_amount``; ``str(error)`` is written to be shown to an end user."""


# --------------------------------------------------------------------------- currencies


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: its three-letter ``code`` and minor-unit ``exponent``.

    Obtain instances with ``currency("usd")`` rather than constructing them by hand, so the
    exponent always comes from the same source of truth.
    """

    code: str
    exponent: int

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CODE_RE.fullmatch(self.code):
            raise ValueError(f"currency code must be three upper-case letters, got {self.code!r}")
        if isinstance(self.exponent, bool) or not isinstance(self.exponent, int):
            raise TypeError(f"currency exponent must be an int, got {self.exponent!r}")
        if self.exponent < 0:
            raise ValueError(f"currency exponent must be >= 0, got {self.exponent}")

    @property
    def quantum(self) -> Decimal:
        """The minor unit as a Decimal: ``Decimal('0.01')`` for USD, ``Decimal('1')`` for JPY."""
        return Decimal((0, (1,), -self.exponent))

    def __str__(self) -> str:
        return self.code


@lru_cache(maxsize=1)
def _known_codes() -> frozenset[str]:
    return frozenset(list_currencies())


@cache
def _currency_for(code: str) -> Currency:
    if not _CODE_RE.fullmatch(code) or code not in _known_codes():
        raise ValueError(f"unknown currency {code!r}")
    exponent = _ISO_EXPONENTS.get(code)
    if exponent is None:
        exponent = get_currency_precision(code)
    return Currency(code, exponent)


def currency(code: str) -> Currency:
    """Return the (cached) ``Currency`` for an ISO 4217 code; case and outer spaces ignored.

    Raises ``ValueError("unknown currency 'XYZ'")`` for codes Babel/CLDR does not know.
    """
    if not isinstance(code, str):
        raise TypeError(f"currency code must be a str, got {type(code).__name__}")
    return _currency_for(code.strip().upper())


def _as_currency(value: Currency | str) -> Currency:
    if isinstance(value, Currency):
        return value
    if isinstance(value, str):
        return currency(value)
    raise TypeError(f"expected a Currency or currency code, got {type(value).__name__}")


# --------------------------------------------------------------------------- helpers


def _to_decimal(value: object, what: str) -> Decimal:
    """Convert an amount/factor to a finite Decimal, refusing floats and bools."""
    if isinstance(value, float):
        raise TypeError(f"{what} must not be a float (got {value!r}); use Decimal or str")
    if isinstance(value, bool):
        raise TypeError(f"{what} must not be a bool")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"invalid {what} {value!r}") from None
    else:
        raise TypeError(f"{what} must be Decimal, int or str, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return result


def _integer_scaled(value: Decimal, shift: int) -> int | None:
    """Return ``value * 10**shift`` as an int if that is integral, else ``None`` (exact)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite by construction
    coefficient = int("".join(map(str, digits))) if digits else 0
    power = exponent + shift
    if power >= 0:
        result = coefficient * 10**power
    else:
        result, remainder = divmod(coefficient, 10**-power)
        if remainder:
            return None
    return -result if sign else result


def check_rounding(rounding: object) -> str:
    """Return ``rounding`` if it is a ``decimal.ROUND_*`` mode, else raise ``ValueError``."""
    if not isinstance(rounding, str) or rounding not in ROUNDING_MODES:
        raise ValueError(f"unknown rounding mode {rounding!r}; use a decimal.ROUND_* constant")
    return rounding


# --------------------------------------------------------------------------- money


@dataclass(frozen=True, slots=True, init=False, eq=True)
class Money:
    """An immutable amount of one currency.

    ``amount`` is a finite ``Decimal`` that may carry more precision than the currency (call
    ``round()`` before storing or displaying a final figure). ``-0`` is normalised to ``0``.
    """

    amount: Decimal
    currency: Currency

    def __init__(self, amount: Decimal | int | str, currency: Currency | str) -> None:
        value = _to_decimal(amount, "amount")
        if value.is_zero() and value.is_signed():
            value = value.copy_abs()
        object.__setattr__(self, "amount", value)
        object.__setattr__(self, "currency", _as_currency(currency))

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def zero(cls, currency: Currency | str) -> Money:
        """Zero in ``currency``, already at the currency's exponent (``0.00`` for USD)."""
        cur = _as_currency(currency)
        return cls(Decimal((0, (0,), -cur.exponent)), cur)

    @classmethod
    def from_minor(cls, units: int, currency: Currency | str) -> Money:
        """Build from an integer count of minor units: ``from_minor(1050, USD)`` is 10.50."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise TypeError(f"minor units must be an int, got {type(units).__name__}")
        cur = _as_currency(currency)
        digits = tuple(int(d) for d in str(abs(units)))
        return cls(Decimal((1 if units < 0 else 0, digits, -cur.exponent)), cur)

    # -- conversions --------------------------------------------------------------------

    def to_minor(self) -> int:
        """The amount as integer minor units. Raises ``ValueError`` if not already rounded."""
        units = _integer_scaled(self.amount, self.currency.exponent)
        if units is None:
            raise ValueError(
                f"{self!r} has more precision than {self.currency.code} minor units; "
                "call .round() first"
            )
        return units

    def round(self, rounding: str = ROUND_HALF_EVEN) -> Money:
        """Quantize to the currency's minor unit (half-even unless another mode is given)."""
        quantized = self.amount.quantize(
            self.currency.quantum, rounding=check_rounding(rounding), context=_QUANTIZE
        )
        return Money(quantized, self.currency)

    def is_rounded(self) -> bool:
        """True if the amount is a whole number of minor units (trailing zeros are fine)."""
        return _integer_scaled(self.amount, self.currency.exponent) is not None

    # -- predicates ---------------------------------------------------------------------

    def is_zero(self) -> bool:
        return self.amount.is_zero()

    def is_negative(self) -> bool:
        return self.amount < 0

    def is_positive(self) -> bool:
        return self.amount > 0

    def __bool__(self) -> bool:
        raise TypeError("Money has no truth value; use .is_zero() or an explicit comparison")

    # -- arithmetic ---------------------------------------------------------------------

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"currency mismatch: {self.currency.code} vs {other.currency.code}"
            )

    def __add__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(_EXACT.add(self.amount, other.amount), self.currency)

    def __sub__(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(_EXACT.subtract(self.amount, other.amount), self.currency)

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, float):
            raise TypeError("cannot multiply Money by a float; use Decimal or int")
        if isinstance(factor, bool) or not isinstance(factor, int | Decimal):
            return NotImplemented
        value = _to_decimal(factor, "factor")
        return Money(_EXACT.multiply(self.amount, value), self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(self.amount.copy_negate(), self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money(self.amount.copy_abs(), self.currency)

    # -- ordering (equality/hash come from the dataclass: amount value + currency) ------

    def _ordered(self, other: object) -> Money | None:
        if not isinstance(other, Money):
            return None
        self._same_currency(other)
        return other

    def __lt__(self, other: object) -> bool:
        o = self._ordered(other)
        return NotImplemented if o is None else self.amount < o.amount

    def __le__(self, other: object) -> bool:
        o = self._ordered(other)
        return NotImplemented if o is None else self.amount <= o.amount

    def __gt__(self, other: object) -> bool:
        o = self._ordered(other)
        return NotImplemented if o is None else self.amount > o.amount

    def __ge__(self, other: object) -> bool:
        o = self._ordered(other)
        return NotImplemented if o is None else self.amount >= o.amount

    # -- text ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Money('{self.amount}', '{self.currency.code}')"

    def __str__(self) -> str:
        return f"{self.amount} {self.currency.code}"


def sum_money(items: Iterable[Money], currency: Currency | str) -> Money:
    """Exact sum of ``items``, all in ``currency``; an empty iterable gives ``Money.zero``."""
    total = Money.zero(currency)
    for item in items:
        total = total + item
    return total


# --------------------------------------------------------------------------- allocation


def allocate(money: Money, weights: Sequence[int | Decimal]) -> list[Money]:
    """Split a rounded ``money`` into parts proportional to ``weights``, summing exactly.

    Each part is its exact proportional share rounded down (toward zero for negative
    totals) to a minor unit; the leftover minor units go one each to the parts with the
    largest remainders, ties to the earlier index. So every part is within one minor unit
    of its exact share, zero weights get zero, and the result is deterministic.
    """
    if not weights:
        raise ValueError("allocate() needs at least one weight")
    if not money.is_rounded():
        raise ValueError(f"allocate() needs a rounded amount, got {money!r}; call .round() first")
    values = [_to_decimal(w, "weight") for w in weights]
    if any(v < 0 for v in values):
        raise ValueError("allocation weights must not be negative")
    # Scale all weights to integers so the whole computation is integer arithmetic.
    shift = max(0, *(-int(v.as_tuple().exponent) for v in values))
    int_weights: list[int] = []
    for v in values:
        scaled = _integer_scaled(v, shift)
        assert scaled is not None  # shift covers every weight's decimals
        int_weights.append(scaled)
    weight_total = sum(int_weights)
    if weight_total == 0:
        raise ValueError("allocate() needs at least one positive weight")

    total = money.to_minor()
    magnitude = abs(total)
    shares: list[int] = []
    remainders: list[int] = []
    for w in int_weights:
        share, remainder = divmod(magnitude * w, weight_total)
        shares.append(share)
        remainders.append(remainder)
    leftover = magnitude - sum(shares)
    # leftover < number of non-zero remainders, so zero weights never receive a unit.
    order = sorted(range(len(shares)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        shares[i] += 1

    sign = -1 if total < 0 else 1
    return [Money.from_minor(sign * s, money.currency) for s in shares]


def split_evenly(money: Money, n: int) -> list[Money]:
    """Split a rounded ``money`` into ``n`` parts differing by at most one minor unit.

    Earlier parts receive the extra minor units (``10.00 / 3 -> 3.34, 3.33, 3.33``).
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return allocate(money, [1] * n)


# --------------------------------------------------------------------------- display & input


def format_money(money: Money, locale: str | Locale = "en_US") -> str:
    """Locale-aware display via Babel, e.g. ``$1,234.50``, ``1.234,50 €`` (de_DE), ``¥1,235``.

    Shows exactly the currency's decimals for a rounded amount (3 for KWD, 0 for JPY, using
    this module's exponents even where Babel's differ). It never rounds: an amount carrying
    extra precision (a unit price such as ``0.0125``) is shown with that precision.
    """
    loc, pattern = _currency_pattern(str(locale), money.currency.exponent)
    return pattern.apply(
        money.amount,
        loc,
        currency=money.currency.code,
        currency_digits=False,
        decimal_quantization=False,
    )


@lru_cache(maxsize=256)
def _currency_pattern(locale: str, exponent: int) -> tuple[Locale, NumberPattern]:
    """Parsing a locale and copying its pattern dominate formatting time; do it once."""
    loc = Locale.parse(locale)
    pattern = copy.copy(loc.currency_formats["standard"])
    pattern.frac_prec = (exponent, exponent)
    return loc, pattern


_AMOUNT_RE: Final = re.compile(
    r"(?P<sign>[-+])?(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)?(?:\.(?P<frac>[0-9]*))?"
)
_MAX_INPUT_LENGTH: Final = 40  # keeps every accepted amount well inside _PRECISION


def _example_amount(cur: Currency) -> str:
    return "1234" if cur.exponent == 0 else "1234." + "50".ljust(cur.exponent, "0")[: cur.exponent]


def parse_amount(text: str, currency: Currency | str, *, allow_negative: bool = False) -> Money:
    """Parse user input such as ``"1234.50"`` or ``"1,234.50"`` into a rounded ``Money``.

    Accepted: optional sign, digits with optional en-style ``,`` thousands grouping (groups
    of three), optional ``.`` and at most ``currency.exponent`` decimals. Outer spaces are
    ignored. Everything else raises ``AmountParseError`` (a ``ValueError``) whose message can
    be shown to the user. Negative amounts are refused unless ``allow_negative`` is true.
    """
    cur = _as_currency(currency)
    hint = f"Enter an amount like {_example_amount(cur)}"
    if not isinstance(text, str):
        raise AmountParseError(hint)
    cleaned = text.strip()
    match = _AMOUNT_RE.fullmatch(cleaned) if len(cleaned) <= _MAX_INPUT_LENGTH else None
    if match is None or not (match["int"] or match["frac"]):
        raise AmountParseError(hint)
    frac = match["frac"] or ""
    if len(frac) > cur.exponent:
        if cur.exponent == 0:
            raise AmountParseError(f"{cur.code} amounts cannot have decimals. {hint}")
        raise AmountParseError(
            f"{cur.code} amounts can have at most {cur.exponent} decimal places. {hint}"
        )
    if match["sign"] == "-" and not allow_negative:
        raise AmountParseError("Enter an amount of zero or more")
    integer = (match["int"] or "0").replace(",", "")
    value = Decimal(f"{match['sign'] or ''}{integer}.{frac or '0'}")
    return Money(value.quantize(cur.quantum, context=_EXACT), cur)
