"""Write-offs, unapplied cash applications and refunds, with approvals. tables.

Amounts are integer minor units of the row's currency. People are recorded as actor
references (``"staff:12"``, ``"system:remit"``): segregation of duties compares them.
"""

from __future__ import annotations

from decimal import Decimal

from piccolo.columns import (
    BigInt,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.payments.tables import Payment


class WriteOffRule(Table, tablename="write_off_rule"):
    """Per currency: a residual at most ``max_amount_minor`` AND at most ``max_percent``
    of the invoice total is written off at once (a null limit is not checked; both
    null means nothing is written off without approval). Missing rows use defaults."""

    currency = Varchar(length=3, unique=True)
    max_amount_minor = BigInt(null=True, default=None)
    max_percent = Numeric(digits=(7, 4), null=True, default=None)
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()


class WriteOff(Table, tablename="write_off"):
    """A write-off of (part of) an invoice's open balance to the write-off account.

    status: pending_approval → written_off | rejected | canceled; kind: auto (within
    the rule, written off at once), manual (requested by staff, approved by a finance
    admin who is not the requester). One pending request per invoice (unique index).
    """

    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    amount_minor = BigInt()
    kind = Varchar(length=16)
    status = Varchar(length=20, index=True)
    reason = Text(default="")
    requested_by = Varchar(length=64)
    requested_at = Timestamptz()
    decided_by = Varchar(length=64, default="")
    decided_at = Timestamptz(null=True, default=None)
    decision_note = Text(default="")


class AllocationChange(Table, tablename="allocation_change"):
    """One apply or unapply of a payment's cash on an invoice: the ledger source of its
    entry (``allocation_change``, id, kind), so repeated applies and unapplies of one
    payment never collide. ``allocation_id`` is the allocation created (apply) or
    removed (unapply); kept as a plain number since an unapplied allocation is deleted.
    """

    payment = ForeignKey(Payment, index=True, null=False, on_delete=OnDelete.restrict)
    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    allocation_id = BigInt()
    kind = Varchar(length=8)  # apply | unapply
    amount_minor = BigInt()
    reason = Text(default="")
    actor = Varchar(length=64)
    created_at = Timestamptz()


class Refund(Table, tablename="cash_refund"):
    """Unapplied cash paid back to the customer.

    status: pending_approval → rejected | processing (approved, posted; waiting for
    Stripe when the payment came through Stripe) → succeeded. ``channel``: bank (paid
    out by finance, books Cash) or stripe (refunded at Stripe, books the Stripe balance).
    """

    payment = ForeignKey(Payment, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    amount_minor = BigInt()
    channel = Varchar(length=8)
    status = Varchar(length=20, index=True)
    reason = Text(default="")
    requested_by = Varchar(length=64)
    requested_at = Timestamptz()
    decided_by = Varchar(length=64, default="")
    decided_at = Timestamptz(null=True, default=None)
    decision_note = Text(default="")
    stripe_refund = Varchar(length=64, default="")
    failure_message = Text(default="")
    completed_at = Timestamptz(null=True, default=None)


class DiscountTerms(Table, tablename="discount_terms"):
    """Early-payment discount of a billing account: ``percent`` off the invoice total
    when paid within ``days`` days of the issue date (e.g. 2/10 net 30)."""

    billing_account = ForeignKey(
        BillingAccount, unique=True, null=False, on_delete=OnDelete.restrict
    )
    percent = Numeric(digits=(7, 4), default=Decimal(0))
    days = Integer(default=0)
    updated_by = Varchar(length=64, default="")
    updated_at = Timestamptz()


class Adjustment(Table, tablename="settlement_adjustment"):
    """A credit line on an invoice: the difference between its open balance and what
    was accepted as settlement (early-payment discount or accepted short payment),
    split into net and tax (per tax code in ``AdjustmentTax``)."""

    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    currency = Varchar(length=3)
    kind = Varchar(length=24)  # early_payment_discount | short_payment
    amount_minor = BigInt()
    net_minor = BigInt()
    tax_minor = BigInt()
    reason = Text(default="")
    created_by = Varchar(length=64)
    created_at = Timestamptz()


class AdjustmentTax(Table, tablename="settlement_adjustment_tax"):
    adjustment = ForeignKey(Adjustment, index=True, null=False, on_delete=OnDelete.restrict)
    tax_code = Varchar(length=32, default="")
    tax_minor = BigInt()
