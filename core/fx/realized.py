"""Realized FX gain/loss: posted when money is applied to an invoice whose currency
differs from its issuing entity's functional currency.

The invoice froze ``fx_rate`` (1 invoice currency = rate functional currency) when it
was finalized. When part of a payment is applied to it, the rate of the application
date (``find_rate``: that day's, or the latest earlier one, however old) is compared
with the frozen one, and the difference on the applied amount is posted **in the
functional currency**, as its own balanced entry:

* loss: debit ``FX_GAIN_LOSS`` (7100), credit ``AR_FX_REVALUATION`` (1190)
* gain: debit ``AR_FX_REVALUATION`` (1190), credit ``FX_GAIN_LOSS`` (7100)

AR (1100) stays in the invoice currency and equal to the open invoice balances; 1190
carries the functional-currency revaluation of the money applied. The entry's source is
the allocation (``source_type="allocation"``, the allocation id, ``event="fx_realized"``)
so it is posted at most once; taking the allocation back posts the exact reversal
(``reverse_realized_fx``); a chargeback that takes back part of what a payment applied
reverses the same part of its realized difference (``standing_realized_fx`` and
``fx_share``), and posts it again if the dispute is won. No rate at all: nothing is
posted, the payment goes through, and a warning plus an ``fx.realized_skipped`` audit
event flag it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import structlog

from core.audit.log import Actor, AuditRecord, record
from core.fx.rates import realized_fx_minor
from core.fx.services import find_rate
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import LineSpec, credit, debit
from core.ledger.tables import JournalEntry, JournalLine
from core.money import Money, allocate
from core.payments.tables import Allocation

log = structlog.get_logger("ledgerline.fx")

SOURCE_TYPE = "allocation"
EVENT = "fx_realized"
REVERSED = "fx_reversed"


@dataclass(frozen=True, slots=True)
class Application:
    """``amount_minor`` of money applied to ``invoice_id`` on ``on``; ``source_id`` is
    the allocation id (the entry's source)."""

    source_id: int
    invoice_id: int
    amount_minor: int
    on: date


def realized_fx_lines(difference_minor: int, billing_account_id: int | None) -> list[LineSpec]:
    """The two lines of a realized difference (+ gain, - loss); empty when zero."""
    if difference_minor == 0:
        return []
    amount = abs(difference_minor)
    if difference_minor > 0:
        return [
            debit(acct.AR_FX_REVALUATION, amount, billing_account_id=billing_account_id),
            credit(acct.FX_GAIN_LOSS, amount),
        ]
    return [
        debit(acct.FX_GAIN_LOSS, amount),
        credit(acct.AR_FX_REVALUATION, amount, billing_account_id=billing_account_id),
    ]


async def _invoices(ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = await Invoice.select(
        Invoice.id,
        Invoice.number,
        Invoice.currency,
        Invoice.billing_account,
        Invoice.issuing_entity,
        Invoice.functional_currency,
        Invoice.fx_rate,
        Invoice.issuing_entity.functional_currency.as_alias("entity_functional"),
    ).where(Invoice.id.is_in(ids or [-1]))
    return {int(r["id"]): r for r in rows}


async def post_realized_fx(applications: list[Application], actor: Actor) -> list[int]:
    """Post the realized FX difference of each application (inside the caller's
    transaction). Returns the ids of the entries posted; never raises for a missing
    rate (flags it instead)."""
    if not applications:
        return []
    invoices = await _invoices(sorted({a.invoice_id for a in applications}))
    rates: dict[tuple[str, str, date], Decimal | None] = {}
    posted: list[int] = []
    for app in applications:
        inv = invoices.get(app.invoice_id)
        if inv is None or app.amount_minor == 0:
            continue
        doc = str(inv["currency"])
        functional = str(inv["functional_currency"] or inv["entity_functional"] or doc)
        if functional == doc:
            continue
        booked = inv["fx_rate"]
        key = (doc, functional, app.on)
        if key not in rates:
            quote = await find_rate(doc, functional, app.on, max_age_days=None)
            rates[key] = quote.rate if quote else None
        settled = rates[key]
        if booked is None or settled is None:
            reason = "no frozen rate on the invoice" if booked is None else "no exchange rate"
            log.warning(
                "realized FX not posted",
                invoice_id=app.invoice_id,
                allocation_id=app.source_id,
                pair=f"{doc}/{functional}",
                on=app.on.isoformat(),
                reason=reason,
            )
            await record(
                AuditRecord(
                    actor,
                    "fx.realized_skipped",
                    "invoice",
                    app.invoice_id,
                    reason_code="fx_missing",
                    data={
                        "allocation": app.source_id,
                        "amount": app.amount_minor,
                        "pair": f"{doc}/{functional}",
                        "date": app.on.isoformat(),
                        "reason": reason,
                    },
                )
            )
            continue
        difference = realized_fx_minor(
            app.amount_minor, doc, functional, Decimal(str(booked)), settled
        )
        lines = realized_fx_lines(difference, inv["billing_account"])
        if not lines:
            continue
        posted.append(
            await post(
                EntrySpec(
                    issuing_entity_id=int(inv["issuing_entity"]),
                    currency=functional,
                    effective_date=app.on,
                    source_type=SOURCE_TYPE,
                    source_id=app.source_id,
                    event=EVENT,
                    description=(
                        f"Realized FX {'gain' if difference > 0 else 'loss'} "
                        f"{inv['number'] or ''} {doc}/{functional} {booked} -> {settled}"
                    )[:500],
                    lines=lines,
                )
            )
        )
    return posted


async def reverse_realized_fx(
    allocation_id: int, source_type: str, source_id: int, on: date
) -> int | None:
    """Post the exact reversal of an allocation's realized FX entry (when it has one),
    sourced on the change that took the allocation back."""
    entry = (
        await JournalEntry.select()
        .where(
            (JournalEntry.source_type == SOURCE_TYPE)
            & (JournalEntry.source_id == allocation_id)
            & (JournalEntry.event == EVENT)
        )
        .first()
    )
    if entry is None:
        return None
    lines = await JournalLine.select(
        JournalLine.account.code.as_alias("code"),
        JournalLine.billing_account,
        JournalLine.debit_minor,
        JournalLine.credit_minor,
    ).where(JournalLine.entry == entry["id"])
    return await post(
        EntrySpec(
            issuing_entity_id=int(entry["issuing_entity"]),
            currency=entry["currency"],
            effective_date=on,
            source_type=source_type,
            source_id=source_id,
            event=REVERSED,
            description=f"Reversal: {entry['description']}"[:500],
            lines=[
                LineSpec(
                    account=line["code"],
                    debit_minor=int(line["credit_minor"]),
                    credit_minor=int(line["debit_minor"]),
                    billing_account_id=line["billing_account"],
                )
                for line in lines
            ],
        )
    )


@dataclass(frozen=True, slots=True)
class StandingFx:
    """The realized FX posted for a payment's allocations, per invoice (signed, in the
    functional currency ``currency`` of ``issuing_entity_id``: + a gain, - a loss)."""

    by_invoice: dict[int, int]
    currency: str
    issuing_entity_id: int


async def standing_realized_fx(payment_id: int, invoice_ids: list[int]) -> StandingFx | None:
    """What ``fx_realized`` entries posted for the payment's allocations (that still
    stand: an unapplied allocation is gone) to each of ``invoice_ids``; None if nothing."""
    allocations = {
        int(r["id"]): int(r["invoice"])
        for r in await Allocation.select(Allocation.id, Allocation.invoice).where(
            (Allocation.payment == payment_id)
            & Allocation.invoice.is_in(invoice_ids or [-1])
            & (Allocation.amount_minor > 0)
        )
    }
    if not allocations:
        return None
    entries = await JournalEntry.select(
        JournalEntry.id, JournalEntry.source_id, JournalEntry.currency, JournalEntry.issuing_entity
    ).where(
        (JournalEntry.source_type == SOURCE_TYPE)
        & (JournalEntry.event == EVENT)
        & JournalEntry.source_id.is_in(sorted(allocations))
    )
    if not entries:
        return None
    invoice_of = {int(e["id"]): allocations[int(e["source_id"])] for e in entries}
    by_invoice: dict[int, int] = {}
    for line in await JournalLine.select(
        JournalLine.entry, JournalLine.debit_minor, JournalLine.credit_minor
    ).where(
        JournalLine.entry.is_in(sorted(invoice_of))
        & (JournalLine.account.code == acct.AR_FX_REVALUATION)
    ):
        invoice_id = invoice_of[int(line["entry"])]
        signed = int(line["debit_minor"]) - int(line["credit_minor"])
        by_invoice[invoice_id] = by_invoice.get(invoice_id, 0) + signed
    return StandingFx(by_invoice, entries[0]["currency"], int(entries[0]["issuing_entity"]))


def fx_share(standing_minor: int, part_minor: int, whole_minor: int, currency: str) -> int:
    """The part of a realized difference that goes with ``part_minor`` of the
    ``whole_minor`` applied (``core.money.allocate``: exact shares, rounded so the parts
    add up)."""
    if standing_minor == 0 or part_minor <= 0 or whole_minor <= 0:
        return 0
    if part_minor >= whole_minor:
        return standing_minor
    share, _ = allocate(
        Money.from_minor(standing_minor, currency), [part_minor, whole_minor - part_minor]
    )
    return share.to_minor()
