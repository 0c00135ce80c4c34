"""Builders for invoice run tests: products, prices, subscriptions and usage events
written straight into their tables (the run reads nothing else)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.billing.run_tables import BillableMetric
from core.billing.tables import PendingCharge, Subscription
from core.catalog.tables import Discount, Price, Product
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference
from core.usage.tables import UsageEvent

NOW = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)


async def price(
    model: str = "flat",
    definition: dict[str, Any] | None = None,
    *,
    currency: str = "EUR",
    metric: str = "",
    timing: str = "advance",
    minimum_minor: int | None = None,
    months: int = 1,
    name: str = "Plan",
) -> int:
    code = uuid.uuid4().hex[:10]
    [prod] = await Product.insert(
        Product(code=f"P-{code}", name=name, created_at=datetime.now(UTC))
    )
    [row] = await Price.insert(
        Price(
            product=prod["id"],
            code=f"PR-{code}",
            currency=currency,
            interval_months=months,
            model=model,
            definition=json.dumps(definition or {"amount": "10.00"}),
            minimum_minor=minimum_minor,
            metric=metric,
            billing_timing=timing,
            created_at=datetime.now(UTC),
        )
    )
    return int(row["id"])


async def discount(
    kind: str = "percent",
    *,
    percent: str = "10",
    duration: str = "once",
    periods: int | None = None,
) -> int:
    [row] = await Discount.insert(
        Discount(
            code=f"D-{uuid.uuid4().hex[:8]}",
            name="Launch",
            kind=kind,
            percent=Decimal(percent),
            duration=duration,
            duration_periods=periods,
            created_at=datetime.now(UTC),
        )
    )
    return int(row["id"])


async def subscription(
    account: int,
    price_id: int,
    *,
    quantity: str = "1",
    start: datetime = FEB,
    end: datetime = MAR,
    status: str = "active",
    discount_id: int | None = None,
    cancel_at_period_end: bool = False,
) -> int:
    [row] = await Subscription.insert(
        Subscription(
            billing_account=account,
            price=price_id,
            quantity=Decimal(quantity),
            status=status,
            anchor_day=start.day,
            anchor_month=start.month,
            anchor_year=start.year,
            current_period_start=start,
            current_period_end=end,
            discount=discount_id,
            cancel_at_period_end=cancel_at_period_end,
            created_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
    )
    return int(row["id"])


async def metric(
    code: str,
    event_name: str,
    aggregation: str = "sum",
    *,
    prop: str = "",
    filters: dict[str, str] | None = None,
) -> None:
    await BillableMetric.insert(
        BillableMetric(
            code=code,
            name=code,
            event_name=event_name,
            aggregation=aggregation,
            property=prop,
            filters=json.dumps(filters or {}),
            created_at=datetime.now(UTC),
        )
    )


async def event(
    account: int,
    name: str,
    quantity: str,
    at: datetime,
    *,
    received: datetime | None = None,
    props: dict[str, Any] | None = None,
) -> int:
    org = (
        await BillingAccount.select(BillingAccount.organization)
        .where(BillingAccount.id == account)
        .first()
    )
    [row] = await UsageEvent.insert(
        UsageEvent(
            organization=org["organization"],
            billing_account=account,
            event_id=uuid.uuid4().hex,
            metric=name,
            quantity=Decimal(quantity),
            occurred_at=at,
            properties=json.dumps(props or {}),
            received_at=received or at,
        )
    )
    return int(row["id"])


async def pending(
    account: int,
    amount_minor: int,
    kind: str = "proration_charge",
    *,
    currency: str = "EUR",
    triggered: bool = True,
) -> int:
    [row] = await PendingCharge.insert(
        PendingCharge(
            billing_account=account,
            kind=kind,
            description=f"{kind} test",
            currency=currency,
            amount_minor=amount_minor,
            trigger="acceptance" if kind == "milestone" else "",
            triggered_at=datetime.now(UTC) if triggered and kind == "milestone" else None,
            created_at=datetime.now(UTC),
        )
    )
    return int(row["id"])


async def assert_books_balance(currency: str = "EUR") -> None:
    assert await trial_balance_difference() == 0
    rows = await Invoice.select(Invoice.balance_minor).where(
        (Invoice.status == "open") & (Invoice.currency == currency)
    )
    assert (await account_balances(currency)).get(acct.AR, 0) == sum(
        r["balance_minor"] for r in rows
    )


def gapless(numbers: list[str]) -> bool:
    """Numbers of each series (prefix up to the sequence) run 1..n without a hole."""
    series: dict[str, list[int]] = {}
    for n in numbers:
        prefix, _, seq = n.rpartition("-")
        series.setdefault(prefix, []).append(int(seq))
    return all(sorted(v) == list(range(1, len(v) + 1)) for v in series.values())


async def accounts(*codes: str, currency: str = "EUR", timezone: str = "UTC") -> list[int]:
    """Billing accounts of one issuing entity, each in its own customer group."""
    from core.identity.services import (
        create_billing_account,
        create_issuing_entity,
        create_organization,
    )

    entity = await create_issuing_entity(
        code=f"E{uuid.uuid4().hex[:6].upper()}",
        name="Acme",
        legal_name="Acme GmbH",
        country="DE",
        functional_currency=currency,
    )
    ids = []
    for code in codes:
        org = await create_organization(name=f"Customer {code}")
        ids.append(
            await create_billing_account(
                code=code,
                name=code,
                organization_id=org,
                issuing_entity_id=entity,
                currency_code=currency,
                timezone=timezone,
                payment_terms_days=14,
            )
        )
    return ids


# --------------------------------------------------------------------------- bulk seeding

BULK_PRICES: tuple[tuple[str, dict[str, Any], str, str, int | None], ...] = (
    # (model, definition, metric, timing, minimum_minor)
    ("flat", {"amount": "49.00"}, "", "advance", None),
    (
        "usage_graduated",
        {
            "tiers": [
                {"up_to": "100", "unit_amount": "0.10"},
                {"up_to": None, "unit_amount": "0.05"},
            ]
        },
        "api_calls",
        "arrears",
        None,
    ),
    ("per_unit", {"unit_amount": "12.50"}, "", "advance", None),
    ("package", {"block_size": 10, "block_amount": "5.00"}, "", "arrears", None),
    (
        "usage_volume",
        {"tiers": [{"up_to": "50", "unit_amount": "0.20"}, {"up_to": None, "unit_amount": "0.15"}]},
        "storage_gb",
        "arrears",
        1000,
    ),
    (
        "volume",
        {"tiers": [{"up_to": "5", "unit_amount": "9.00"}, {"up_to": None, "unit_amount": "7.00"}]},
        "",
        "advance",
        None,
    ),
)


async def seed_bulk(
    conn: Any,
    subscriptions: int,
    *,
    per_account: int = 4,
    events_per_usage: int = 3,
    currency: str = "EUR",
) -> dict[str, int]:
    """``subscriptions`` subscriptions in bulk SQL (asyncpg ``conn``), mixed pricing models
    (a third metered, with usage events), all due at ``NOW``: advance ones on March,
    arrears and metered ones on February. Returns counts."""
    tag = uuid.uuid4().hex[:6].upper()
    now = datetime.now(UTC)
    entity = await conn.fetchval(
        "INSERT INTO issuing_entity (code, name, legal_name, country, functional_currency)"
        " VALUES ($1, 'Acme', 'Acme GmbH', 'DE', $2) RETURNING id",
        f"B{tag}",
        currency,
    )
    n_accounts = -(-subscriptions // per_account)
    orgs = [
        r[0]
        for r in await conn.fetch(
            "INSERT INTO customer_organization (name) SELECT 'Bulk ' || g"
            " FROM generate_series(1, $1) g RETURNING id",
            n_accounts,
        )
    ]
    await conn.execute(
        "UPDATE customer_organization SET root_id = id, path = '/' || id || '/'"
        " WHERE id = ANY($1::int[])",
        orgs,
    )
    accts = [
        r[0]
        for r in await conn.fetch(
            "INSERT INTO billing_account (code, name, organization, issuing_entity, currency,"
            " payment_terms_days) SELECT $1 || o, 'Bulk ' || o, o, $2, $3, 14"
            " FROM unnest($4::int[]) o ORDER BY o RETURNING id",
            f"BULK-{tag}-",
            entity,
            currency,
            orgs,
        )
    ]
    product = await conn.fetchval(
        "INSERT INTO product (code, name, description, active, created_at)"
        " VALUES ($1, 'Platform', '', true, $2) RETURNING id",
        f"PLAT-{tag}",
        now,
    )
    price_ids = []
    for i, (model, definition, metric_code, timing, minimum) in enumerate(BULK_PRICES):
        price_ids.append(
            await conn.fetchval(
                "INSERT INTO price (product, code, nickname, currency, interval_months, model,"
                " definition, minimum_minor, rounding, trial_days, metric, tax_code,"
                " billing_timing, revenue_deferred, active, created_at) VALUES ($1, $2, $3, $4,"
                " 1, $5, $6, $7, 'half_even', 0, $8, '', $9, false, true, $10) RETURNING id",
                product,
                f"{model}-{tag}-{i}",
                model,
                currency,
                model.removeprefix("usage_"),
                json.dumps(definition),
                minimum,
                metric_code,
                timing,
                now,
            )
        )
    # Subscription g (0-based): price g % 6, account g // per_account; advance prices on
    # March, arrears and metered ones on February (all due at NOW).
    await conn.execute(
        """
        INSERT INTO subscription (billing_account, price, quantity, status, anchor_day,
            anchor_month, anchor_year, current_period_start, current_period_end,
            cancel_at_period_end, discount_periods_used, version, created_at, updated_at)
        SELECT ($1::int[])[g / $3 + 1], ($2::int[])[g % 6 + 1], 1 + g % 5, 'active', 1,
            CASE WHEN ($4::text[])[g % 6 + 1] = 'advance' THEN 3 ELSE 2 END, 2026,
            CASE WHEN ($4::text[])[g % 6 + 1] = 'advance' THEN $5::timestamptz
                 ELSE $6::timestamptz END,
            CASE WHEN ($4::text[])[g % 6 + 1] = 'advance' THEN $7::timestamptz
                 ELSE $5::timestamptz END,
            false, 0, 1, $8, $8
        FROM generate_series(0, $9 - 1) g
        """,
        accts,
        price_ids,
        per_account,
        [p[3] for p in BULK_PRICES],
        MAR,
        FEB,
        APR,
        now,
        subscriptions,
    )
    # Usage events for the metered subscriptions (prices 2 and 5 of 6): per account and
    # metric, ``events_per_usage`` events in February.
    events = await conn.fetchval(
        """
        WITH m AS (
            SELECT s.billing_account, p.metric, b.organization
            FROM subscription s JOIN price p ON p.id = s.price
            JOIN billing_account b ON b.id = s.billing_account
            WHERE p.metric <> '' AND s.price = ANY($1::int[])
        ), ins AS (
            INSERT INTO usage_event (organization, billing_account, event_id, metric, quantity,
                occurred_at, properties, received_at)
            SELECT m.organization, m.billing_account,
                   $2 || m.billing_account || '-' || m.metric || '-' || k, m.metric,
                   (m.billing_account % 7) * 10 + k * 5,
                   $3::timestamptz + make_interval(days => k), '{}', $3::timestamptz
            FROM m, generate_series(1, $4) k
            RETURNING 1
        )
        SELECT count(*) FROM ins
        """,
        price_ids,
        f"ev-{tag}-",
        FEB,
        events_per_usage,
    )
    return {"accounts": len(accts), "subscriptions": subscriptions, "events": int(events)}
