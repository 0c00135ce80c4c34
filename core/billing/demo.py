"""Demo catalog and subscriptions (called once by ``core.demo_data.seed_demo``).

Products with prices in USD and EUR (a price book, not conversion): flat plans monthly and
yearly, per-seat, a trial plan, usage-based graduated and volume prices, a package price;
two discounts; and subscriptions for the demo billing accounts, each in a period that
contains today.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from core.audit.log import Actor
from core.billing import subscriptions
from core.catalog import services as catalog
from core.catalog.tables import Price
from core.identity.tables import BillingAccount

_PRODUCTS = (
    ("platform", "Platform", "The Ledgerline platform plans"),
    ("seats", "Seats", "Named users"),
    ("api", "API calls", "Metered API usage"),
    ("storage", "Storage", "Metered storage, GB-months"),
    ("support", "Support packs", "Blocks of support hours"),
)
# (product, code suffix, nickname, interval months, model, fields, USD, EUR)
_PRICES: tuple[tuple[str, str, str, str, str, dict[str, str], str, str], ...] = (
    ("platform", "starter-m", "Starter (monthly)", "1", "flat", {}, "49.00", "45.00"),
    ("platform", "pro-m", "Pro (monthly)", "1", "flat", {}, "199.00", "179.00"),
    ("platform", "business-m", "Business (monthly)", "1", "flat", {}, "499.00", "459.00"),
    ("platform", "pro-y", "Pro (yearly)", "12", "flat", {}, "1990.00", "1790.00"),
    ("platform", "pro-trial-m", "Pro with 14-day trial", "1", "flat", {"trial_days": "14"},
     "199.00", "179.00"),
    ("seats", "seat-m", "Seats (monthly)", "1", "per_unit", {}, "12.00", "11.00"),
    ("support", "support-m", "Support hours (blocks of 10)", "1", "package", {"block_size": "10"},
     "900.00", "850.00"),
)  # fmt: skip
_METERED = (
    ("api", "api-graduated-m", "API calls (graduated)", "graduated", "api_calls",
     {"USD": "100000 0.002\n1000000 0.0015\n* 0.001", "EUR": "100000 0.0018\n* 0.0009"}),
    ("storage", "storage-volume-m", "Storage (volume)", "volume", "storage_gb",
     {"USD": "100 0.25\n1000 0.20\n* 0.15", "EUR": "100 0.23\n* 0.14"}),
)  # fmt: skip


async def seed_catalog(actor: Actor, today: date) -> None:
    """Create the demo catalog and subscriptions (skipped if the catalog exists)."""
    if await Price.exists().where(Price.code == "pro-m-usd"):
        return
    products = {}
    for code, name, description in _PRODUCTS:
        products[code] = await catalog.create_product(
            {"code": code, "name": name, "description": description}, actor
        )
    prices: dict[str, int] = {}
    for product, suffix, nickname, months, model, extra, usd, eur in _PRICES:
        for cur, amount in (("USD", usd), ("EUR", eur)):
            field = {"flat": "amount", "per_unit": "unit_amount"}.get(model, "block_amount")
            code = f"{suffix}-{cur.lower()}"
            prices[code] = await catalog.create_price(
                products[product],
                {
                    "code": code,
                    "nickname": nickname,
                    "currency": cur,
                    "interval_months": months,
                    "model": model,
                    field: amount,
                    **extra,
                },
                actor,
            )
    for product, suffix, nickname, model, metric, tiers in _METERED:
        for cur, text in tiers.items():
            code = f"{suffix}-{cur.lower()}"
            prices[code] = await catalog.create_price(
                products[product],
                {
                    "code": code,
                    "nickname": nickname,
                    "currency": cur,
                    "interval_months": "1",
                    "model": model,
                    "tiers": text,
                    "metric": metric,
                    "billing_timing": "arrears",
                },
                actor,
            )
    await catalog.create_discount(
        {"code": "launch20", "name": "Launch 20 %", "kind": "percent", "percent": "20",
         "duration": "repeating", "duration_periods": "3"},
        actor,
    )  # fmt: skip
    await catalog.create_discount(
        {"code": "welcome50", "name": "Welcome 50 EUR", "kind": "amount", "amount": "50",
         "currency": "EUR", "duration": "once"},
        actor,
    )  # fmt: skip
    accounts = {
        r["code"]: r["id"]
        for r in await BillingAccount.select(BillingAccount.id, BillingAccount.code)
    }
    month_start = today.replace(day=1)
    year_start = today.replace(month=1, day=1)
    plan = (
        ("GLOBEX-US-01", "pro-m-usd", "1", month_start),
        ("GLOBEX-US-01", "seat-m-usd", "25", month_start),
        ("GLOBEX-EU-01", "pro-y-eur", "1", year_start),
        ("GLOBEX-EU-01", "storage-volume-m-eur", "1", month_start),
        ("INITECH-US-01", "starter-m-usd", "1", month_start),
        ("INITECH-US-01", "api-graduated-m-usd", "1", month_start),
        ("INITECH-EU-01", "seat-m-eur", "10", month_start),
    )
    for account, price, qty, start in plan:
        if account in accounts:
            await subscriptions.create(
                accounts[account],
                prices[price],
                Decimal(qty),
                actor,
                start_date=start,
                anchor_day=1,
            )
