"""Payments (money received) and allocations (part of a payment applied to an invoice)."""

from __future__ import annotations

from piccolo.columns import BigInt, ForeignKey, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice


class Payment(Table, tablename="payment"):
    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    currency = Varchar(length=3)
    amount_minor = BigInt()
    unapplied_minor = BigInt(default=0)
    method = Varchar(length=16)  # card, bank_transfer, check, manual
    reference = Varchar(length=120, default="")
    status = Varchar(length=16, default="succeeded")
    received_at = Timestamptz()
    created_at = Timestamptz()


class Allocation(Table, tablename="allocation"):
    payment = ForeignKey(Payment, index=True, null=False, on_delete=OnDelete.restrict)
    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    amount_minor = BigInt()
    created_at = Timestamptz()
