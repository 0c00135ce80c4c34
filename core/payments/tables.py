"""Payments (money received) and allocations (part of a payment applied to an invoice)."""

from __future__ import annotations

from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount, CustomerOrganization, User
from core.invoicing.tables import Invoice


class PaymentAttempt(Table, tablename="payment_attempt"):
    """One try at collecting money through Stripe, for one or more open invoices of one
    customer group, in one currency. Our id is the root of every Stripe idempotency key
    (``attempt-{id}-{operation}``), so a retry after a crash never charges twice.

    status: pending_approval → approved → processing (sent to Stripe) → succeeded | failed
    | requires_action | canceled; ``unknown`` when a Stripe call's outcome was not recorded
    (crash, timeout) until the reconciliation job asks Stripe. kind: checkout,
    saved_method, autopay, api.
    """

    organization = ForeignKey(
        CustomerOrganization, index=True, null=False, on_delete=OnDelete.restrict
    )  # root of the customer group: the idempotency scope
    currency = Varchar(length=3)
    amount_minor = BigInt()
    kind = Varchar(length=16)
    status = Varchar(length=20, index=True)
    created_by_user = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    approval_required = Boolean(default=False)
    approved_by_user = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    approved_at = Timestamptz(null=True, default=None)
    stripe_customer = Varchar(length=64, default="")
    stripe_payment_method = Varchar(length=64, default="")
    stripe_payment_intent = Varchar(length=64, default="", index=True)
    stripe_checkout_session = Varchar(length=64, default="", index=True)
    failure_code = Varchar(length=64, default="")
    failure_message = Text(default="")
    tries = Integer(default=0)
    # Whether the customer is absent when it is charged (autopay, approvals, the API);
    # stored so a repeated request to Stripe carries exactly the same parameters.
    off_session = Boolean(default=True)
    next_try_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    settled_at = Timestamptz(null=True, default=None)


class PaymentAttemptItem(Table, tablename="payment_attempt_item"):
    """The part of an attempt meant for one invoice."""

    attempt = ForeignKey(PaymentAttempt, index=True, null=False, on_delete=OnDelete.restrict)
    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    amount_minor = BigInt()


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
    # Set when the money came through Stripe (one payment per billing account of an
    # attempt); unique per (attempt, billing_account) so settling twice is impossible.
    attempt = ForeignKey(PaymentAttempt, null=True, default=None, on_delete=OnDelete.restrict)
    stripe_payment_intent = Varchar(length=64, default="")


class Allocation(Table, tablename="allocation"):
    payment = ForeignKey(Payment, index=True, null=False, on_delete=OnDelete.restrict)
    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    amount_minor = BigInt()
    created_at = Timestamptz()


class StripeWebhookEvent(Table, tablename="stripe_webhook_event"):
    """A Stripe event we have handled: its id is unique, and the row is written in the
    same transaction as the handling, so a redelivered event is applied at most once."""

    event_id = Varchar(length=64, unique=True)
    event_type = Varchar(length=64)
    received_at = Timestamptz()
