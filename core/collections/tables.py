"""Collections tables: chargebacks (card-network disputes) with what they reversed, dunning
schedules, reminders, pauses and promises to pay, and the Stripe-vs-ledger reconciliation.

Amounts are integer minor units of the row's currency (see ``core.money``).
"""

from __future__ import annotations

from piccolo.columns import (
    BigInt,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.payments.tables import Payment


class Chargeback(Table, tablename="chargeback"):
    """A Stripe dispute of a charge, mirrored from Stripe (re-read on every event).

    status: open → won | lost. ``reversed_at`` is set once the payment's allocations were
    reversed (invoice balances reopened, funds_withdrawn posted); a dispute whose payment
    is not recorded yet stays open with ``reversed_at`` empty until the next sync.
    """

    stripe_dispute = Varchar(length=64, unique=True)
    stripe_charge = Varchar(length=64, default="")
    stripe_payment_intent = Varchar(length=64, default="", index=True)
    currency = Varchar(length=3)
    amount_minor = BigInt()
    fee_minor = BigInt(default=0)
    reason = Varchar(length=40, default="")
    stripe_status = Varchar(length=32, default="")
    status = Varchar(length=16, default="open", index=True)
    evidence_due_by = Timestamptz(null=True, default=None)
    evidence = Text(default="{}")  # JSON: the evidence fields Stripe holds
    evidence_submissions = Integer(default=0)
    reversed_minor = BigInt(default=0)
    reinstated_minor = BigInt(default=0)
    reversed_at = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class ChargebackReversal(Table, tablename="chargeback_reversal"):
    """What one chargeback took back from one payment: from an invoice's allocation
    (``invoice`` set) or from the payment's unapplied cash (``invoice`` empty)."""

    chargeback = ForeignKey(Chargeback, index=True, null=False, on_delete=OnDelete.restrict)
    payment = ForeignKey(Payment, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    invoice = ForeignKey(Invoice, index=True, null=True, default=None, on_delete=OnDelete.restrict)
    amount_minor = BigInt()
    reapplied_minor = BigInt(default=0)  # to the invoice again when the dispute was won
    # realized FX of the amount taken back (functional currency, + a gain), reversed with
    # it; and the part posted again when the dispute was won (core.fx.realized)
    fx_minor = BigInt(default=0)
    fx_reinstated_minor = BigInt(default=0)
    created_at = Timestamptz()


class DunningSchedule(Table, tablename="dunning_schedule"):
    """Reminder steps as day offsets from the due date ("-3,0,7,14,30"). The row with no
    billing account is the default; a billing account's row overrides it."""

    billing_account = ForeignKey(
        BillingAccount, null=True, default=None, unique=True, on_delete=OnDelete.restrict
    )
    offsets = Varchar(length=200)
    updated_at = Timestamptz()
    updated_by = Varchar(length=64, default="")


class DunningReminder(Table, tablename="dunning_reminder"):
    """One reminder of one step for one invoice: unique (invoice, step_offset), inserted
    (status ``sending``) and committed before the email goes out, then marked ``sent``;
    a retry finds the row and never sends that step again. ``failed``: the SMTP server
    refused it (the next run may try again)."""

    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    step_offset = Integer()
    status = Varchar(length=16, default="sending")
    recipient = Varchar(length=254, default="")
    run_date = Date()
    message_id = Varchar(length=200, default="")
    error = Text(default="")
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)


class DunningPause(Table, tablename="dunning_pause"):
    """Reminders paused for one invoice (``invoice`` set) or the whole billing account,
    until ``until`` (inclusive; empty: until lifted). reason: chargeback, dispute, manual."""

    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    invoice = ForeignKey(Invoice, index=True, null=True, default=None, on_delete=OnDelete.restrict)
    reason = Varchar(length=16)
    source = Varchar(length=64, default="", index=True)  # e.g. "chargeback:12", "staff:3"
    note = Text(default="")
    until = Date(null=True, default=None)
    created_at = Timestamptz()
    created_by = Varchar(length=64, default="")
    lifted_at = Timestamptz(null=True, default=None)
    lifted_by = Varchar(length=64, default="")


class PromiseToPay(Table, tablename="promise_to_pay"):
    """A customer's promise, recorded by collections staff: reminders for the invoice wait
    until the promised date (inclusive). status: open, cancelled."""

    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    billing_account = ForeignKey(BillingAccount, null=False, on_delete=OnDelete.restrict)
    promised_date = Date()
    amount_minor = BigInt()
    currency = Varchar(length=3)
    note = Text(default="")
    status = Varchar(length=16, default="open")
    created_by = Varchar(length=64, default="")
    created_at = Timestamptz()


class ReconciliationRun(Table, tablename="stripe_reconciliation_run"):
    """One comparison of Stripe balance transactions with the ledger."""

    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    since_created = BigInt(default=0)  # Stripe ``created`` (unix) the listing started from
    last_created = BigInt(default=0)  # newest ``created`` seen: where the next run starts
    transactions = Integer(default=0)
    differences = Integer(default=0)
    triggered_by = Varchar(length=64, default="")


class StripeBalanceTxn(Table, tablename="stripe_balance_txn"):
    """A Stripe balance transaction as the reconciliation saw it, with the Stripe object it
    belongs to (``key``: ``pi_…`` for charges and refunds, ``dp_…`` for disputes)."""

    stripe_id = Varchar(length=64, unique=True)
    type = Varchar(length=32)
    category = Varchar(length=32)
    source = Varchar(length=64)
    key = Varchar(length=64, index=True)
    currency = Varchar(length=3)
    amount_minor = BigInt()
    fee_minor = BigInt(default=0)
    net_minor = BigInt()
    created = BigInt()
    run = ForeignKey(ReconciliationRun, null=True, default=None, on_delete=OnDelete.restrict)


class ReconciliationDifference(Table, tablename="reconciliation_difference"):
    """Stripe and the ledger disagree about one Stripe object (``key``). kind:
    missing_in_ledger, missing_in_stripe, amount_mismatch. status: open, resolved."""

    key = Varchar(length=64, index=True)
    kind = Varchar(length=24)
    currency = Varchar(length=3)
    stripe_minor = BigInt(default=0)
    ledger_minor = BigInt(default=0)
    detail = Text(default="")
    status = Varchar(length=16, default="open", index=True)
    run = ForeignKey(ReconciliationRun, null=True, default=None, on_delete=OnDelete.restrict)
    created_at = Timestamptz()
    resolved_at = Timestamptz(null=True, default=None)
    resolved_by = Varchar(length=64, default="")
    note = Text(default="")
