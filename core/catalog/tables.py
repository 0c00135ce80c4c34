"""Catalog tables: products, their prices per currency (a price book, not conversion)
and discounts. A price's pricing model is described by ``model`` and ``definition``
(amounts as decimal strings in major units, never floats); ``core.catalog.pricing``
holds the pure rules that turn a quantity into an amount."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table


class Product(Table, tablename="product"):
    code = Varchar(length=64, unique=True)
    name = Varchar(length=200)
    description = Text(default="")
    active = Boolean(default=True)
    created_at = Timestamptz()


class Price(Table, tablename="price"):
    """One price of a product in one currency and interval.

    model: flat, per_unit, package, graduated, volume. ``definition`` holds the model's
    parameters, e.g. ``{"amount": "49.00"}``, ``{"unit_amount": "0.10"}``,
    ``{"block_size": 100, "block_amount": "5.00"}``,
    ``{"tiers": [{"up_to": "1000", "unit_amount": "0.10", "flat_amount": "0"}, ...]}``
    (the last tier's ``up_to`` is null). ``metric`` names the billable metric for a
    usage-based price ("" for a licensed/recurring price billed on the subscription's
    quantity). interval_unit: month (quarter = 3 months, year = 12, custom N months).
    """

    product = ForeignKey(Product, index=True, null=False, on_delete=OnDelete.restrict)
    code = Varchar(length=64, unique=True)
    nickname = Varchar(length=200, default="")
    currency = Varchar(length=3)
    interval_months = Integer(default=1)
    model = Varchar(length=16)
    definition = JSON(default="{}")
    minimum_minor = BigInt(null=True, default=None)
    rounding = Varchar(length=16, default="half_even")
    trial_days = Integer(default=0)
    metric = Varchar(length=64, default="")
    tax_code = Varchar(length=32, default="")
    billing_timing = Varchar(length=16, default="advance")  # advance | arrears
    revenue_deferred = Boolean(default=False)  # recognised over the period (deferred revenue)
    active = Boolean(default=True)
    created_at = Timestamptz()


class Discount(Table, tablename="discount"):
    """A percentage or fixed-amount discount, applied once, for N periods, or forever."""

    code = Varchar(length=64, unique=True)
    name = Varchar(length=200)
    kind = Varchar(length=16)  # percent | amount
    percent = Numeric(digits=(9, 6), null=True, default=None)
    amount_minor = BigInt(null=True, default=None)
    currency = Varchar(length=3, default="")
    duration = Varchar(length=16)  # once | repeating | forever
    duration_periods = Integer(null=True, default=None)
    created_at = Timestamptz()
