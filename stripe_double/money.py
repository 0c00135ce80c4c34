"""Currencies, minimum charge amounts and the double's fee schedule (all in minor units)."""

from __future__ import annotations

from stripe_double.errors import invalid

# fmt: off
ZERO_DECIMAL = frozenset((
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
))
THREE_DECIMAL = frozenset((
    "bhd", "jod", "kwd", "omr", "tnd",
))
CURRENCIES = frozenset((
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
    "bdt", "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad",
    "cdf", "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp",
    "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl",
    "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf",
    "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd",
    "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok",
    "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd",
    "rub", "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl",
    "thb", "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
))
# fmt: on
# Stripe's minimum charge amounts for the common settlement currencies; others: 50.
MINIMUM_CHARGE = {
    "usd": 50,
    "eur": 50,
    "gbp": 30,
    "chf": 50,
    "cad": 50,
    "aud": 50,
    "nzd": 50,
    "sgd": 50,
    "jpy": 50,
    "sek": 300,
    "nok": 300,
    "dkk": 250,
    "pln": 200,
    "czk": 1500,
    "huf": 17500,
    "hkd": 400,
    "mxn": 1000,
    "brl": 50,
    "inr": 50,
    "aed": 200,
}  # fmt: skip
FEE_PERCENT_TENTHS = 29  # 2.9 %
FEE_FIXED = 30  # minor units
DISPUTE_FEE = 1500  # minor units


def exponent(currency: str) -> int:
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def currency_param(value: str | None, param: str = "currency") -> str:
    if not value:
        raise invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")
    code = value.lower()
    if code not in CURRENCIES:
        raise invalid(f"Invalid currency: {value}.", param=param)
    return code


def check_charge_amount(amount: int, currency: str) -> None:
    if amount < 1:
        raise invalid("This value must be greater than or equal to 1.", param="amount")
    minimum = MINIMUM_CHARGE.get(currency, 50)
    if amount < minimum:
        raise invalid(
            f"Amount must be at least {format_amount(minimum, currency)} {currency}",
            param="amount",
            code="amount_too_small",
        )
    if currency in THREE_DECIMAL and amount % 10:
        raise invalid(
            f"Amounts in {currency} must be a multiple of 10 (the last digit must be 0).",
            param="amount",
            code="invalid_charge_amount",
        )


def processing_fee(amount: int) -> int:
    """2.9 % (rounded half up) + 30 minor units, in the charge's currency."""
    return (amount * FEE_PERCENT_TENTHS + 500) // 1000 + FEE_FIXED


def format_amount(amount: int, currency: str) -> str:
    digits = exponent(currency)
    if digits == 0:
        return f"{amount}"
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"
