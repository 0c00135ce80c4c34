"""Double-entry ledger: chart of accounts, journal entries and their lines."""

from __future__ import annotations

from piccolo.columns import BigInt, Boolean, Date, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount, IssuingEntity


class LedgerAccount(Table, tablename="ledger_account"):
    code = Varchar(length=16, unique=True)
    name = Varchar(length=120)
    kind = Varchar(length=16)  # asset, liability, equity, revenue, expense


class JournalEntry(Table, tablename="journal_entry"):
    issuing_entity = ForeignKey(IssuingEntity, index=True, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    effective_date = Date()
    description = Text(default="")
    source_type = Varchar(length=32)
    source_id = BigInt()
    event = Varchar(length=32)
    posted_at = Timestamptz()


class JournalLine(Table, tablename="journal_line"):
    entry = ForeignKey(JournalEntry, index=True, null=False, on_delete=OnDelete.restrict)
    account = ForeignKey(LedgerAccount, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(
        BillingAccount, null=True, default=None, on_delete=OnDelete.restrict
    )
    debit_minor = BigInt(default=0)
    credit_minor = BigInt(default=0)
    tax_code = Varchar(length=32, default="")


class PeriodLock(Table, tablename="period_lock"):
    """A closed month of one issuing entity's books: nothing may be posted into it.

    Unlocking keeps the row (locked = False) so the history stays readable; every change
    is also an audit event.
    """

    issuing_entity = ForeignKey(IssuingEntity, null=False, on_delete=OnDelete.restrict)
    period = Varchar(length=7)  # "YYYY-MM"
    locked = Boolean(default=True)
    reason = Text(default="")
    changed_by = Varchar(length=64, default="")
    changed_at = Timestamptz()
