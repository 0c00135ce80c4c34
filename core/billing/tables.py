"""Billing tables: subscriptions, their change history, and pending one-off charges
(proration credits and debits, milestones) waiting for the next invoice."""

from __future__ import annotations

from piccolo.columns import (
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.catalog.tables import Discount, Price
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice


class Subscription(Table, tablename="subscription"):
    """A billing account, price and quantity, billed period after period.

    status: trialing, active, past_due, canceled. The current period is
    [current_period_start, current_period_end) in UTC, computed in the account's
    timezone from ``anchor_day``. ``version`` increases with every change (optimistic
    check on top of the row lock taken by every service that changes it).

    The anchor is ``core.billing.periods.BillingAnchor(anchor_day, anchor_month,
    anchor_year)``: periods of an N-month price start every N months counted from
    anchor_year/anchor_month (``core.billing.subscriptions.anchor_of(row)`` builds it).
    During a trial the current period is [start, trial_end) and nothing is billed; when
    the trial ends the first paid period starts. ``cancel_at_period_end``: the period is
    billed, the next one is not (the subscription becomes canceled at its end).
    ``discount_periods_used`` counts the periods billed with the discount so far.
    """

    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    price = ForeignKey(Price, null=False, on_delete=OnDelete.restrict)
    quantity = Numeric(digits=(18, 6))
    status = Varchar(length=16, index=True)
    anchor_day = Integer(default=1)
    anchor_month = Integer(default=1)
    anchor_year = Integer(default=2000)
    current_period_start = Timestamptz()
    current_period_end = Timestamptz(index=True)
    trial_end = Timestamptz(null=True, default=None)
    cancel_at_period_end = Boolean(default=False)
    canceled_at = Timestamptz(null=True, default=None)
    discount = ForeignKey(Discount, null=True, default=None, on_delete=OnDelete.restrict)
    discount_periods_used = Integer(default=0)
    version = Integer(default=1)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class SubscriptionChange(Table, tablename="subscription_change"):
    """Every change of a subscription, with the proration it produced.

    kind: create, change_price, change_quantity, cancel_now, cancel_at_period_end,
    reactivate, restart, trial_ended, canceled_at_period_end, past_due, past_due_cleared.
    Amounts are signed minor units (credit negative)."""

    subscription = ForeignKey(Subscription, index=True, null=False, on_delete=OnDelete.restrict)
    kind = Varchar(length=24)
    from_price = ForeignKey(Price, null=True, default=None, on_delete=OnDelete.restrict)
    to_price = ForeignKey(Price, null=True, default=None, on_delete=OnDelete.restrict)
    from_quantity = Numeric(digits=(18, 6), null=True, default=None)
    to_quantity = Numeric(digits=(18, 6), null=True, default=None)
    effective_at = Timestamptz()
    credit_minor = BigInt(default=0)
    charge_minor = BigInt(default=0)
    actor = Varchar(length=120, default="")
    created_at = Timestamptz()


class PendingCharge(Table, tablename="pending_charge"):
    """A line waiting for an invoice: a proration credit (negative) or debit, a usage
    correction, or a milestone billed once its trigger is recorded (``triggered_at``).
    ``invoice`` is set when a run puts it on an invoice, which makes it billed once."""

    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    subscription = ForeignKey(Subscription, null=True, default=None, on_delete=OnDelete.restrict)
    kind = Varchar(length=24)  # proration_credit, proration_charge, usage_correction, milestone
    description = Varchar(length=300)
    currency = Varchar(length=3)
    amount_minor = BigInt()
    period_start = Timestamptz(null=True, default=None)
    period_end = Timestamptz(null=True, default=None)
    trigger = Text(default="")  # e.g. "acceptance of phase 1" for a milestone
    triggered_at = Timestamptz(null=True, default=None)
    invoice = ForeignKey(Invoice, null=True, default=None, on_delete=OnDelete.restrict)
    # The subscription change (plan/quantity change, cancel, start) that produced it.
    subscription_change = ForeignKey(
        SubscriptionChange, null=True, default=None, on_delete=OnDelete.restrict
    )
    created_at = Timestamptz()
