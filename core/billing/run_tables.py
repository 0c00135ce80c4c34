"""Invoice runs, their chunks and billed periods; billable metrics; late usage events.

* ``BillableMetric``: how usage events become a billed quantity (aggregation over the
  events named ``event_name``, optionally filtered on their properties). A usage price
  names a metric by ``code``; a code without a row means "sum of the quantities of the
  events of that name".
* ``InvoiceRun`` / ``RunChunk``: a run picks the subscriptions due at ``as_of`` and splits
  them into chunks, one arq job each (job id ``run:{run}:chunk:{n}``). Counters on a
  chunk are recomputed from the database each time it runs, so a rerun never counts twice.
* ``BilledPeriod``: UNIQUE (subscription, period_start) (raw migration): the guard that
  makes an invoice per subscription and period happen once, whatever reruns.
* ``LateUsage``: usage events that arrived after their period was billed, and what
  became of them (applied to the draft, corrected on the next invoice, held, released,
  discarded). UNIQUE usage_event.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
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

from core.billing.tables import PendingCharge, Subscription
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice


class BillableMetric(Table, tablename="billable_metric"):
    """aggregation: sum | count | max | unique_count | last. ``property`` names the event
    property counted by unique_count; ``filters`` is ``{"property": "value", ...}``: only
    events whose properties carry every one of these values count."""

    code = Varchar(length=64, unique=True)
    name = Varchar(length=200)
    event_name = Varchar(length=64, index=True)
    aggregation = Varchar(length=16)
    property = Varchar(length=64, default="")
    filters = JSON(default="{}")
    unit = Varchar(length=32, default="")
    created_at = Timestamptz()


class InvoiceRun(Table, tablename="invoice_run"):
    """status: planning, running, completed, failed (some chunk failed for good)."""

    status = Varchar(length=16, default="planning", index=True)
    as_of = Timestamptz()
    trigger = Varchar(length=16, default="cron")  # cron | staff | catch-up | bench | test
    # a catch-up run continues the run ``follows`` (at most one does: a unique index,
    # made by a raw migration), the ``catch_up``-th in its chain, for subscriptions that
    # were several periods behind
    follows = Integer(null=True, default=None)
    catch_up = Integer(default=0)
    created_by = Varchar(length=64, default="")
    chunk_size = Integer(default=1000)
    subscriptions_total = Integer(default=0)
    accounts_total = Integer(default=0)  # accounts billed for pending charges only
    chunks_total = Integer(default=0)
    created_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)


class RunChunk(Table, tablename="run_chunk"):
    """A slice of a run: ``items`` is ``{"subscriptions": [...], "accounts": [...]}``.
    status: queued, running, done, failed. ``error`` keeps the last failure's reason."""

    run = ForeignKey(InvoiceRun, index=True, null=False, on_delete=OnDelete.restrict)
    number = Integer()
    items = JSON(default="{}")
    size = Integer(default=0)
    status = Varchar(length=16, default="queued", index=True)
    attempts = Integer(default=0)
    invoices = Integer(default=0)
    finalized = Integer(default=0)
    held = Integer(default=0)
    error = Text(default="")
    updated_at = Timestamptz()


class BilledPeriod(Table, tablename="billed_period"):
    """One subscription period put on one invoice. UNIQUE (subscription, period_start).
    ``usage_quantity`` is the billed quantity of a usage price (for corrections) and
    ``usage_cutoff`` the instant up to which received events were counted."""

    subscription = ForeignKey(Subscription, null=False, on_delete=OnDelete.restrict)
    period_start = Timestamptz()
    period_end = Timestamptz()
    invoice = ForeignKey(Invoice, index=True, null=False, on_delete=OnDelete.restrict)
    run = ForeignKey(InvoiceRun, index=True, null=True, default=None, on_delete=OnDelete.restrict)
    chunk = Integer(default=0)
    usage_quantity = Numeric(digits=(20, 6), null=True, default=None)
    usage_cutoff = Timestamptz()


class LateUsage(Table, tablename="late_usage"):
    """A usage event received after its period was billed.

    status: applied (added to the period's draft invoice), corrected (a usage_correction
    pending charge for the next invoice), held (after the reconciliation window: staff
    review), released (staff released it: corrected), discarded (staff discarded it)."""

    usage_event = BigInt(unique=True)
    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    billed_period = ForeignKey(BilledPeriod, null=False, on_delete=OnDelete.restrict)
    metric = Varchar(length=64)
    quantity = Numeric(digits=(20, 6))
    occurred_at = Timestamptz()
    received_at = Timestamptz()
    status = Varchar(length=16, index=True)
    pending_charge = ForeignKey(PendingCharge, null=True, default=None, on_delete=OnDelete.restrict)
    reviewed_by = Varchar(length=64, default="")
    reviewed_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
