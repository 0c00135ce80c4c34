"""Bank statements, their lines, column mappings and matching. tables."""

from __future__ import annotations

from piccolo.columns import JSON, BigInt, Date, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount


class CsvMapping(Table, tablename="remittance_csv_mapping"):
    """A named, saved way of reading one bank's CSV export.

    ``columns`` maps our fields (value_date, amount, credit, debit, currency, reference,
    payer_name, payer_account, bank_reference) to the file's column headers (or 1-based
    column numbers when the file has no header row).
    """

    name = Varchar(length=80, unique=True)
    delimiter = Varchar(length=4, default=",")
    has_header = Varchar(length=5, default="true")
    columns = JSON(default="{}")
    date_format = Varchar(length=32, default="%Y-%m-%d")
    decimal_separator = Varchar(length=1, default=".")
    # plus_is_credit (money in is positive), minus_is_credit, separate_columns
    sign_convention = Varchar(length=20, default="plus_is_credit")
    default_currency = Varchar(length=3, default="")
    created_at = Timestamptz()
    created_by = Varchar(length=64, default="")


class BankStatement(Table, tablename="bank_statement"):
    """One imported file. ``statement_key`` (format, bank account, statement id) and
    ``content_hash`` are unique: the same statement is never imported twice."""

    format = Varchar(length=8)  # camt053, bai2, mt940, csv
    statement_key = Varchar(length=200, unique=True)
    statement_ref = Varchar(length=120, default="")
    bank_account = Varchar(length=64, default="")
    content_hash = Varchar(length=64, unique=True)
    filename = Varchar(length=200, default="")
    mapping_name = Varchar(length=80, default="")
    line_count = Integer(default=0)
    auto_applied = Integer(default=0)
    suggested = Integer(default=0)
    unmatched = Integer(default=0)
    imported_by = Varchar(length=64, default="")
    imported_at = Timestamptz()


class StatementLine(Table, tablename="bank_statement_line"):
    """One credit (money in) of a statement and what became of it.

    status: auto_applied, applied (by staff), suggested (a suggestion waits for staff),
    unmatched, unidentified (staff found no owner), ignored (a debit: not a receipt).
    ``suggestion`` is a list of ``{"invoice_id", "amount_minor"}``; ``confidence`` is in
    percent (0-100).
    """

    statement = ForeignKey(BankStatement, index=True, null=False, on_delete=OnDelete.restrict)
    line_no = Integer()
    value_date = Date()
    amount_minor = BigInt()
    currency = Varchar(length=3)
    reference = Text(default="")
    payer_name = Varchar(length=200, default="")
    payer_account = Varchar(length=64, default="")
    bank_reference = Varchar(length=120, default="")
    status = Varchar(length=16, index=True)
    rule = Varchar(length=32, default="")
    reason = Text(default="")
    confidence = Integer(default=0)
    suggestion = JSON(default="[]")
    billing_account = ForeignKey(
        BillingAccount, null=True, default=None, on_delete=OnDelete.restrict
    )
    payment_id = BigInt(null=True, default=None, index=True)
    note = Text(default="")
    updated_at = Timestamptz()


class KnownPayer(Table, tablename="remittance_known_payer"):
    """A bank account (IBAN / account number, normalized) or payer name seen paying a
    billing account; learned from applied matches, used by the amount + payer rules."""

    # "acct:DE89..." or "name:ACME"; unique per (payer_key, billing_account): one payer
    # may pay for several billing accounts.
    payer_key = Varchar(length=220, index=True)
    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    times_seen = Integer(default=1)
    learned_at = Timestamptz()


class MatchingSettings(Table, tablename="remittance_matching_settings"):
    """The matching configuration (one row; defaults in core.remittance.matching)."""

    config = JSON(default="{}")
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()
