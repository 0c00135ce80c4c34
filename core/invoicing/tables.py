"""Invoicing tables: invoices with their lines, numbering series and aging snapshots.

Amounts are integer minor units of the document's currency (see ``core.money``).
"""

from __future__ import annotations

from decimal import Decimal

from piccolo.columns import (
    BigInt,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount, IssuingEntity


class NumberSeries(Table, tablename="number_series"):
    """A gapless counter per issuing entity, jurisdiction, document type and year."""

    issuing_entity = ForeignKey(IssuingEntity, null=False, on_delete=OnDelete.restrict)
    jurisdiction = Varchar(length=8)
    document_type = Varchar(length=16)
    year = Integer()
    prefix = Varchar(length=32)
    last_number = BigInt(default=0)
    # The format its numbers are rendered with (tokens: see core.invoicing.rules), fixed
    # when the series is created so later policy changes never renumber a series.
    number_format = Varchar(length=64, default="")


class InvoicingPolicy(Table, tablename="invoicing_policy"):
    """Per issuing entity: the approval threshold and the number format of new series."""

    issuing_entity = ForeignKey(IssuingEntity, unique=True, null=False, on_delete=OnDelete.restrict)
    # Invoices whose total, in the entity's functional currency, reaches this need approval.
    approval_threshold_minor = BigInt(null=True, default=None)
    number_format = Varchar(length=64, default="")
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()


class AccountApprovalRule(Table, tablename="account_approval_rule"):
    """A billing account whose invoices always need a staff approval before finalizing."""

    billing_account = ForeignKey(
        BillingAccount, unique=True, null=False, on_delete=OnDelete.restrict
    )
    requires_approval = Boolean(default=True)
    reason = Text(default="")
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()


class Invoice(Table, tablename="invoice"):
    number = Varchar(length=40, null=True, default=None, unique=True)
    # no single-column index: (billing_account, due_date, id) and (billing_account,
    # total_minor, id), made by a raw migration, serve every lookup by account (each
    # index costs every invoice write)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    issuing_entity = ForeignKey(IssuingEntity, null=False, on_delete=OnDelete.restrict)
    # Not indexed, on purpose: an index on status would make every payment's update of
    # the invoice (balance, status) a non-HOT update rewriting all the table's indexes.
    # Drafts (the review queue) are found by the partial index "number IS NULL", open
    # invoices by account or due date; the table keeps 15% free space (fillfactor 85)
    # so that those updates stay on their page (see the invoicing migrations).
    status = Varchar(length=16, default="draft")
    currency = Varchar(length=3)
    issue_date = Date(null=True, default=None)
    due_date = Date(null=True, default=None, index=True)
    subtotal_minor = BigInt(default=0)
    tax_minor = BigInt(default=0)
    total_minor = BigInt(default=0, index=True)
    paid_minor = BigInt(default=0)
    balance_minor = BigInt(default=0)
    memo = Text(default="")
    created_at = Timestamptz()
    finalized_at = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)
    # Who or what drafted it ("staff:12", "run:7", "system"): approval needs someone else.
    created_by = Varchar(length=64, default="")
    document_type = Varchar(length=16, default="invoice")  # invoice | credit_memo
    # tax: pending (not computed yet), calculated, estimated (fallback rules), exempt
    tax_status = Varchar(length=16, default="pending")
    # approval: not_required, pending, approved (by someone other than created_by)
    approval_status = Varchar(length=16, default="not_required")
    approved_by = Varchar(length=64, default="")
    # Exchange rate to the issuing entity's functional currency, frozen at finalization.
    functional_currency = Varchar(length=3, default="")
    fx_rate = Numeric(digits=(20, 10), null=True, default=None)
    fx_source = Varchar(length=32, default="")
    fx_date = Date(null=True, default=None)
    # Shown on the document, e.g. the reverse-charge mention; set by the tax service.
    tax_note = Varchar(length=200, default="")
    # The billing period an invoice run produced it for (informational; idempotency of
    # runs lives in the billing_runs tables).
    period_start = Timestamptz(null=True, default=None)
    period_end = Timestamptz(null=True, default=None)


class InvoiceLine(Table, tablename="invoice_line"):
    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    position = Integer()
    description = Varchar(length=300)
    quantity = Numeric(digits=(18, 6))
    unit_price = Numeric(digits=(18, 6))  # major units, may exceed the currency's precision
    amount_minor = BigInt()  # rounded once, at line level
    tax_rate = Numeric(digits=(9, 6), default=Decimal(0))
    tax_minor = BigInt(default=0)
    tax_code = Varchar(length=32, default="")
    # recurring, usage, proration, discount, milestone, correction, manual
    kind = Varchar(length=24, default="manual")
    revenue_account = Varchar(length=16, default="4000")  # 4000 revenue, 2300 deferred
    period_start = Timestamptz(null=True, default=None)
    period_end = Timestamptz(null=True, default=None)


class AgingSnapshot(Table, tablename="aging_snapshot"):
    """Open receivables of one billing account by days past due, as of a date."""

    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    as_of = Date()
    currency = Varchar(length=3)
    current_minor = BigInt(default=0)
    days_1_30_minor = BigInt(default=0)
    days_31_60_minor = BigInt(default=0)
    days_61_90_minor = BigInt(default=0)
    days_over_90_minor = BigInt(default=0)
    total_minor = BigInt(default=0)
    created_at = Timestamptz()
