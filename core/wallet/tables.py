"""Wallet tables: the Stripe customer of each customer group, saved payment methods
(Stripe ids and display details only: card data never reaches us) and autopay
enrollments with the mandate the customer accepted."""

from __future__ import annotations

from piccolo.columns import Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount, CustomerOrganization, User


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
