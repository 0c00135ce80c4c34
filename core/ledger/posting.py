"""Posting journal entries and reading balances derived from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from piccolo.query.functions.aggregate import Sum

from core.db import transaction
from core.ledger.accounts import CHART
from core.ledger.periods import ensure_open
from core.ledger.rules import LineSpec, check_balanced, without_zero_lines
from core.ledger.tables import JournalEntry, JournalLine, LedgerAccount


@dataclass(frozen=True, slots=True)
class EntrySpec:
    issuing_entity_id: int
    currency: str
    effective_date: date
    source_type: str
    source_id: int
    event: str
    description: str
    lines: Sequence[LineSpec]


async def ensure_chart() -> None:
    """Create the chart of accounts if missing (idempotent)."""
    existing = {row["code"] for row in await LedgerAccount.select(LedgerAccount.code)}
    missing = [
        LedgerAccount(code=code, name=name, kind=kind)
        for code, (name, kind) in CHART.items()
        if code not in existing
    ]
    if missing:
        await LedgerAccount.insert(*missing)


async def _account_ids() -> dict[str, int]:
    rows = await LedgerAccount.select(LedgerAccount.id, LedgerAccount.code)
    return {row["code"]: row["id"] for row in rows}


async def post(spec: EntrySpec) -> int:
    """Post a balanced entry inside the caller's transaction (or a new one).

    Raises ``UnbalancedEntryError`` before anything is written, and
    ``PeriodLockedError`` when the entry is dated in a locked period.
    """
    lines = without_zero_lines(spec.lines)
    check_balanced(lines)
    async with transaction():
        await ensure_open(spec.issuing_entity_id, spec.effective_date)
        accounts = await _account_ids()
        unknown = sorted({line.account for line in lines} - accounts.keys())
        if unknown:
            raise ValueError(f"unknown ledger account(s): {', '.join(unknown)}")
        [row] = await JournalEntry.insert(
            JournalEntry(
                issuing_entity=spec.issuing_entity_id,
                currency=spec.currency,
                effective_date=spec.effective_date,
                description=spec.description,
                source_type=spec.source_type,
                source_id=spec.source_id,
                event=spec.event,
                posted_at=datetime.now(UTC),
            )
        )
        entry_id = int(row["id"])
        await JournalLine.insert(
            *[
                JournalLine(
                    entry=entry_id,
                    account=accounts[line.account],
                    billing_account=line.billing_account_id,
                    debit_minor=line.debit_minor,
                    credit_minor=line.credit_minor,
                    tax_code=line.tax_code,
                )
                for line in lines
            ]
        )
    return entry_id


async def account_balances(currency: str | None = None) -> dict[str, int]:
    """Debit-minus-credit balance per account code, derived from the lines."""
    query = JournalLine.select(
        JournalLine.account.code.as_alias("code"),
        Sum(JournalLine.debit_minor).as_alias("debits"),
        Sum(JournalLine.credit_minor).as_alias("credits"),
    ).group_by(JournalLine.account.code)
    if currency is not None:
        query = query.where(JournalLine.entry.currency == currency)
    return {row["code"]: int(row["debits"] or 0) - int(row["credits"] or 0) for row in await query}


async def trial_balance_difference() -> int:
    """Total debits minus total credits over the whole ledger; always 0."""
    return sum((await account_balances()).values())
