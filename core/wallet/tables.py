"""Wallet tables: the Stripe customer of each customer group, saved payment methods
(Stripe ids and display details only: card data never reaches us) and autopay
enrollments with the mandate the customer accepted."""

from __future__ import annotations

from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount, CustomerOrganization, User
from core.payments.tables import Payment, PaymentAttempt


class StripeCustomer(Table, tablename="stripe_customer"):
    """The Stripe customer of a customer group (its root organization)."""

    organization = ForeignKey(
        CustomerOrganization, unique=True, null=False, on_delete=OnDelete.restrict
    )
    stripe_customer = Varchar(length=64, unique=True)
    created_at = Timestamptz()


class SavedPaymentMethod(Table, tablename="saved_payment_method"):
    """A payment method saved through a SetupIntent, usable by the group's payers."""

    organization = ForeignKey(
        CustomerOrganization, index=True, null=False, on_delete=OnDelete.restrict
    )  # root of the customer group
    stripe_payment_method = Varchar(length=64, unique=True)
    stripe_customer = Varchar(length=64)
    kind = Varchar(length=16, default="card")  # card, sepa_debit, us_bank_account
    brand = Varchar(length=32, default="")
    last4 = Varchar(length=4, default="")
    exp_month = Integer(null=True, default=None)
    exp_year = Integer(null=True, default=None)
    is_default = Boolean(default=False)
    created_by_user = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    created_at = Timestamptz()
    removed_at = Timestamptz(null=True, default=None)


class AutopayEnrollment(Table, tablename="autopay_enrollment"):
    """Autopay for one billing account: charge its invoices on their due date with a
    saved method. The mandate text the user accepted is kept verbatim."""

    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    payment_method = ForeignKey(SavedPaymentMethod, null=False, on_delete=OnDelete.restrict)
    mandate_text = Text()
    mandate_version = Varchar(length=16, default="1")
    accepted_by_user = ForeignKey(User, null=False, on_delete=OnDelete.restrict)
    accepted_at = Timestamptz()
    accepted_ip = Varchar(length=64, default="")
    active = Boolean(default=True)
    ended_at = Timestamptz(null=True, default=None)


class AutopayCharge(Table, tablename="autopay_charge"):
    """One autopay try: the payment attempt the daily run started for an enrolled
    account's due invoices in one currency. ``try_number`` counts tries of the same
    invoices under the same enrollment; after a failure ``next_try_at`` says when the
    next try may start (None: no more tries). ``notice_status`` tracks the failure email
    (none → pending → sending → sent | failed): claimed before sending, so a retried job
    never sends it twice."""

    enrollment = ForeignKey(AutopayEnrollment, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    # Null between claiming the invoices and creating the attempt (a crash there leaves
    # the row "abandoned" by the next run, which starts again).
    attempt = ForeignKey(
        PaymentAttempt, unique=True, null=True, default=None, on_delete=OnDelete.restrict
    )
    invoice_ids = Text(default="")  # comma-separated ids of the invoices this try pays
    currency = Varchar(length=3)
    amount_minor = BigInt()
    try_number = Integer(default=1)
    outcome = Varchar(length=20, default="pending", index=True)
    failure_code = Varchar(length=64, default="")
    failure_message = Text(default="")
    next_try_at = Timestamptz(null=True, default=None)
    notice_status = Varchar(length=16, default="none")
    notice_error = Text(default="")
    created_at = Timestamptz()
    resolved_at = Timestamptz(null=True, default=None)


class ReceiptDelivery(Table, tablename="receipt_delivery"):
    """The receipt email of one payment (unique per payment). status: pending → sending →
    sent | failed (SMTP refused, will be retried) | skipped (no address). A row found in
    ``sending`` is never sent again automatically (it may have gone out)."""

    payment = ForeignKey(Payment, unique=True, null=False, on_delete=OnDelete.restrict)
    to_email = Varchar(length=254, default="")
    status = Varchar(length=16, default="pending", index=True)
    tries = Integer(default=0)
    last_error = Text(default="")
    message_id = Varchar(length=200, default="")
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)
