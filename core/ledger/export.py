"""General-ledger export: every journal line of a date range as CSV, one row per line,
with its entry, source document, account, amounts and tax code.

Amounts are written in major units of the entry's currency (``Decimal``, exact), debit
and credit in separate columns. Text cells that a spreadsheet would run as a formula
(starting with = + - @ or a tab/CR) are prefixed with an apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from core.ledger.tables import JournalLine
from core.money import Money

COLUMNS = (
    "effective_date",
    "entry_id",
    "issuing_entity",
    "source_type",
    "source_id",
    "event",
    "description",
    "account_code",
    "account_name",
    "currency",
    "debit",
    "credit",
    "tax_code",
    "billing_account",
)
MAX_DAYS = 366


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Pure: GL rows (as returned by ``gl_lines``) to CSV text with a header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        debit = Money.from_minor(int(r["debit_minor"]), r["currency"]).amount
        credit = Money.from_minor(int(r["credit_minor"]), r["currency"]).amount
        writer.writerow(
            [
                r["effective_date"].isoformat(),
                r["entry_id"],
                _cell(r["entity_code"]),
                _cell(r["source_type"]),
                r["source_id"],
                _cell(r["event"]),
                _cell(r["description"]),
                _cell(r["account_code"]),
                _cell(r["account_name"]),
                r["currency"],
                debit if r["debit_minor"] else "",
                credit if r["credit_minor"] else "",
                _cell(r["tax_code"]),
                _cell(r["billing_account_code"] or ""),
            ]
        )
    return out.getvalue()


async def gl_lines(
    date_from: date, date_to: date, issuing_entity_id: int | None = None
) -> list[dict[str, Any]]:
    """Journal lines with effective dates in [date_from, date_to], in entry order."""
    where = (JournalLine.entry.effective_date >= date_from) & (
        JournalLine.entry.effective_date <= date_to
    )
    if issuing_entity_id is not None:
        where &= JournalLine.entry.issuing_entity == issuing_entity_id
    return (
        await JournalLine.select(
            JournalLine.entry.effective_date.as_alias("effective_date"),
            JournalLine.entry.id.as_alias("entry_id"),
            JournalLine.entry.issuing_entity.code.as_alias("entity_code"),
            JournalLine.entry.source_type.as_alias("source_type"),
            JournalLine.entry.source_id.as_alias("source_id"),
            JournalLine.entry.event.as_alias("event"),
            JournalLine.entry.description.as_alias("description"),
            JournalLine.entry.currency.as_alias("currency"),
            JournalLine.account.code.as_alias("account_code"),
            JournalLine.account.name.as_alias("account_name"),
            JournalLine.billing_account.code.as_alias("billing_account_code"),
            JournalLine.debit_minor,
            JournalLine.credit_minor,
            JournalLine.tax_code,
        )
        .where(where)
        .order_by(JournalLine.entry.effective_date)
        .order_by(JournalLine.entry.id)
        .order_by(JournalLine.id)
    )
