"""Catalog services: products, prices (validated through the pricing rules), discounts.

Prices are never edited once created (invoices and subscriptions refer to them): to change
a price, create a new one and deactivate the old one. A deactivated price stays on the
subscriptions that use it but can no longer be chosen for a new subscription or a change.
Every change is audited.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.catalog.price_book import (
    PriceRow,
    definition_from_row,
    describe_definition,
    interval_name,
    parse_discount_form,
    parse_price_form,
)
from core.catalog.tables import Discount, Price, Product
from core.db import transaction
from core.errors import NotFound, ValidationFailed

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _now() -> datetime:
    return datetime.now(UTC)


def _text(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


async def create_product(form: Mapping[str, str], actor: Actor) -> int:
    code, name = _text(form, "code"), _text(form, "name")
    errors = {}
    if not _CODE.fullmatch(code):
        errors["code"] = "Use 1-64 letters, digits, '.', '_' or '-'"
    if not name or len(name) > 200:
        errors["name"] = "Enter a name (up to 200 characters)"
    description = _text(form, "description")[:2000]
    async with transaction():
        if not errors and await Product.exists().where(Product.code == code):
            errors["code"] = "A product with this code exists"
        if errors:
            raise ValidationFailed(errors)
        [row] = await Product.insert(
            Product(code=code, name=name, description=description, active=True, created_at=_now())
        )
        await record(
            AuditRecord(actor, "catalog.product_created", "product", row["id"], data={"code": code})
        )
    return int(row["id"])


async def create_price(product_id: int, form: Mapping[str, str], actor: Actor) -> int:
    values = parse_price_form(form)
    if not 0 < product_id < 2**31:
        raise NotFound("product")
    async with transaction():
        if not await Product.exists().where(Product.id == product_id):
            raise NotFound("product")
        if await Price.exists().where(Price.code == values["code"]):
            raise ValidationFailed({"code": "A price with this code exists"})
        [row] = await Price.insert(
            Price(
                product=product_id,
                **{**values, "definition": json.dumps(values["definition"])},
                active=True,
                created_at=_now(),
            )
        )
        await record(
            AuditRecord(
                actor,
                "catalog.price_created",
                "price",
                row["id"],
                data={
                    "code": values["code"],
                    "model": values["model"],
                    "currency": values["currency"],
                    "definition": values["definition"],
                    "minimum_minor": values["minimum_minor"],
                },
            )
        )
    return int(row["id"])


async def set_price_active(price_id: int, active: bool, actor: Actor) -> None:
    if not 0 < price_id < 2**31:
        raise NotFound("price")
    async with transaction():
        row = await Price.select(Price.id, Price.active).where(Price.id == price_id).first()
        if row is None:
            raise NotFound("price")
        if row["active"] == active:
            return
        await Price.update({Price.active: active}).where(Price.id == price_id)
        action = "catalog.price_activated" if active else "catalog.price_deactivated"
        await record(AuditRecord(actor, action, "price", price_id))


async def create_discount(form: Mapping[str, str], actor: Actor) -> int:
    values = parse_discount_form(form)
    async with transaction():
        if await Discount.exists().where(Discount.code == values["code"]):
            raise ValidationFailed({"code": "A discount with this code exists"})
        [row] = await Discount.insert(Discount(**values, created_at=_now()))
        await record(
            AuditRecord(
                actor,
                "catalog.discount_created",
                "discount",
                row["id"],
                data={k: str(v) for k, v in values.items()},
            )
        )
    return int(row["id"])


# --------------------------------------------------------------------------- reading

PRICE_COLUMNS = (
    Price.id,
    Price.code,
    Price.nickname,
    Price.currency,
    Price.interval_months,
    Price.model,
    Price.definition,
    Price.minimum_minor,
    Price.rounding,
    Price.trial_days,
    Price.metric,
    Price.billing_timing,
    Price.active,
    Price.product.name.as_alias("product_name"),
    Price.product.code.as_alias("product_code"),
    Price.product.id.as_alias("product_id"),
)


def decorate_price(row: dict[str, Any]) -> dict[str, Any]:
    """Add display fields to a price row: ``summary``, ``interval``, ``label``."""
    row["summary"] = describe_definition(PriceRow.of(row))
    row["interval"] = interval_name(row["interval_months"])
    name = row.get("nickname") or row.get("product_name") or row["code"]
    row["label"] = f"{name} ({row['summary']}, per {row['interval']})"
    return row


async def list_products() -> list[dict[str, Any]]:
    return await Product.select().order_by(Product.code)


async def list_prices(
    *, currency: str | None = None, active_only: bool = False
) -> list[dict[str, Any]]:
    query = Price.select(*PRICE_COLUMNS).order_by(Price.product.code).order_by(Price.code)
    if currency is not None:
        query = query.where(Price.currency == currency)
    if active_only:
        query = query.where(Price.active.eq(True))
    return [decorate_price(r) for r in await query]


async def get_price(price_id: int) -> dict[str, Any]:
    row = await Price.select(*PRICE_COLUMNS).where(Price.id == price_id).first()
    if row is None:
        raise NotFound("price")
    return decorate_price(row)


async def list_discounts() -> list[dict[str, Any]]:
    return await Discount.select().order_by(Discount.code)


def check_definition(row: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` if a stored price row does not describe a valid price."""
    definition_from_row(PriceRow.of(row))
