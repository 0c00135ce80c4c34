"""Nightly aging snapshots: open receivables of each billing account by days past due."""

from __future__ import annotations

from datetime import UTC, date, datetime

from core.db import transaction
from core.errors import NotFound
from core.identity.tables import BillingAccount
from core.invoicing.rules import age
from core.invoicing.tables import AgingSnapshot, Invoice


async def snapshot_account(billing_account_id: int, as_of: date) -> bool:
    """Write the account's snapshot for ``as_of``; False if it already existed.

    Idempotent: the unique (billing_account, as_of) index makes a rerun a no-op.
    """
    account = (
        await BillingAccount.select(BillingAccount.currency)
        .where(BillingAccount.id == billing_account_id)
        .first()
    )
    if account is None:
        raise NotFound("billing account")
    rows = await Invoice.select(Invoice.due_date, Invoice.balance_minor).where(
        (Invoice.billing_account == billing_account_id) & (Invoice.status == "open")
    )
    buckets = age(((r["due_date"], r["balance_minor"]) for r in rows), as_of)
    async with transaction():
        inserted = await AgingSnapshot.insert(
            AgingSnapshot(
                billing_account=billing_account_id,
                as_of=as_of,
                currency=account["currency"],
                current_minor=buckets["current"],
                days_1_30_minor=buckets["days_1_30"],
                days_31_60_minor=buckets["days_31_60"],
                days_61_90_minor=buckets["days_61_90"],
                days_over_90_minor=buckets["days_over_90"],
                total_minor=sum(buckets.values()),
                created_at=datetime.now(UTC),
            )
        ).on_conflict(action="DO NOTHING")
    return bool(inserted)


async def billing_account_ids() -> list[int]:
    return [
        r["id"] for r in await BillingAccount.select(BillingAccount.id).order_by(BillingAccount.id)
    ]
