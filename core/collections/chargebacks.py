"""Chargebacks: Stripe disputes mirrored into the books.

Every Stripe dispute event leads to ``sync_dispute``: the dispute is read again from
Stripe (events come duplicated and in any order, their payloads may be stale) and
``apply_dispute`` brings our side to match it, in one transaction, idempotently:

* first sight with the payment known (``Payment.stripe_payment_intent``): the disputed
  amount is taken back from the payment, from its unapplied cash first and then from its
  invoice allocations (newest first): invoice balances reopen (negative ``Allocation``
  rows), the payment is marked ``disputed``, and one entry per payment posts
  Dr AR (per billing account) / Dr Unapplied cash / Dr Dispute losses (Stripe's dispute
  fee, withdrawn with the funds) / Cr Stripe balance. Dunning pauses on the invoices and
  their billing accounts (source ``chargeback:{id}``).
* closed **won**: Stripe returns the funds; each reopened invoice gets its money again
  (as far as it is still open; the rest becomes unapplied cash of the payment):
  Dr Stripe balance / Cr AR / Cr Unapplied cash; the payment is ``succeeded`` again.
* closed **lost**: the money stays gone; the invoices stay open and go back to
  collections (dunning resumes; staff may mark them uncollectible, which writes them
  off); the payment is ``reversed``. The fee was already posted to Dispute losses.

Postings are unique per (``chargeback``, id, event), so nothing posts twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe

from core.audit.log import Actor, AuditRecord, record
from core.collections.dunning import lift_pauses_in_tx, pause_in_tx
from core.collections.tables import Chargeback, ChargebackReversal
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.fx.realized import fx_share, realized_fx_lines, standing_realized_fx
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.ledger.tables import JournalEntry
from core.payments.tables import Allocation, Payment

STRIPE_ACTOR = Actor.system("stripe")
CLOSED = ("won", "lost")


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    field: str
    label: str
    help: str
    kind: str  # "file": a Stripe file id (file_…), uploaded in Stripe; "text"


EVIDENCE_CHECKLIST: tuple[EvidenceItem, ...] = (
    EvidenceItem(
        "customer_communication",
        "Customer communication",
        "Emails or tickets showing the customer used or acknowledged the service.",
        "file",
    ),
    EvidenceItem("receipt", "Receipt or invoice", "The invoice the payment settled.", "file"),
    EvidenceItem(
        "service_documentation",
        "Service documentation",
        "Contract, order form or usage records proving the service was provided.",
        "file",
    ),
    EvidenceItem("refund_policy", "Refund policy", "The terms the customer agreed to.", "file"),
    EvidenceItem(
        "cancellation_policy", "Cancellation policy", "How and when they could cancel.", "file"
    ),
    EvidenceItem("customer_name", "Customer name", "The legal name billed.", "text"),
    EvidenceItem(
        "customer_email_address", "Customer email address", "The bill-to address.", "text"
    ),
    EvidenceItem("service_date", "Service date", "When the service was provided.", "text"),
    EvidenceItem("product_description", "Product description", "What the customer bought.", "text"),
    EvidenceItem(
        "access_activity_log",
        "Access activity log",
        "Sign-ins or API usage by the customer during the period.",
        "text",
    ),
    EvidenceItem(
        "uncategorized_text",
        "Explanation",
        "Anything else the card network should know.",
        "text",
    ),
)
EVIDENCE_FIELDS = {item.field: item for item in EVIDENCE_CHECKLIST}
MAX_TEXT = 20000


def default_client() -> stripe.StripeClient:
    """The application's Stripe client (``core.payments.gateway``)."""
    from core.payments import gateway  # owned by the payments area; resolved at call time

    client: stripe.StripeClient = gateway.stripe_client()
    return client


async def retrieve_dispute(dispute_id: str, client: stripe.StripeClient) -> dict[str, Any]:
    dispute = await asyncio.to_thread(client.v1.disputes.retrieve, dispute_id)
    return dispute.to_dict(recursive=True)


async def sync_dispute(
    dispute_id: str,
    *,
    client: stripe.StripeClient | None = None,
    actor: Actor = STRIPE_ACTOR,
) -> int:
    """Read the dispute from Stripe and bring the chargeback up to date; returns its id."""
    dispute = await retrieve_dispute(dispute_id, client or default_client())
    return await apply_dispute(dispute, actor=actor)


async def on_dispute_event(
    event_type: str, obj: Mapping[str, Any], client: stripe.StripeClient | None = None
) -> None:
    """Webhook handler for every ``charge.dispute.*`` event (the payload is only a hint)."""
    dispute_id = obj.get("id")
    if isinstance(dispute_id, str) and dispute_id.startswith("dp_"):
        await sync_dispute(dispute_id, client=client)


# ------------------------------------------------------------------------ mirroring


def _fee(dispute: Mapping[str, Any]) -> int:
    return sum(
        int(t.get("fee") or 0)
        for t in dispute.get("balance_transactions") or []
        if isinstance(t, Mapping) and t.get("reporting_category") == "dispute"
    )


def _evidence(dispute: Mapping[str, Any]) -> dict[str, str]:
    raw = dispute.get("evidence") or {}
    return {k: str(v) for k, v in raw.items() if v not in (None, "")}


def _due(dispute: Mapping[str, Any]) -> datetime | None:
    due = (dispute.get("evidence_details") or {}).get("due_by")
    return datetime.fromtimestamp(int(due), UTC) if due else None


async def apply_dispute(dispute: Mapping[str, Any], *, actor: Actor = STRIPE_ACTOR) -> int:
    """Make our chargeback match Stripe's dispute (one transaction, idempotent)."""
    now = datetime.now(UTC)
    status = str(dispute.get("status") or "")
    charge = dispute.get("charge")
    charge_id = charge.get("id") if isinstance(charge, Mapping) else str(charge or "")
    async with transaction():
        inserted = await Chargeback.insert(
            Chargeback(
                stripe_dispute=dispute["id"],
                stripe_charge=charge_id,
                stripe_payment_intent=str(dispute.get("payment_intent") or ""),
                currency=str(dispute.get("currency") or "").upper(),
                amount_minor=int(dispute.get("amount") or 0),
                status="open",
                created_at=now,
                updated_at=now,
            )
        ).on_conflict(action="DO NOTHING")
        cb = await for_update(
            Chargeback.select().where(Chargeback.stripe_dispute == dispute["id"])
        ).first()
        assert cb is not None
        cb_id = int(cb["id"])
        if inserted:
            await record(
                AuditRecord(
                    actor,
                    "chargeback.opened",
                    "chargeback",
                    cb_id,
                    reason_code=str(dispute.get("reason") or ""),
                    data={"dispute": dispute["id"], "amount": cb["amount_minor"]},
                )
            )
        evidence = _evidence(dispute)
        await Chargeback.update(
            {
                Chargeback.stripe_status: status,
                Chargeback.reason: str(dispute.get("reason") or "")[:40],
                Chargeback.fee_minor: _fee(dispute),
                Chargeback.evidence_due_by: _due(dispute),
                Chargeback.evidence: json.dumps(evidence, sort_keys=True),
                Chargeback.evidence_submissions: int(
                    (dispute.get("evidence_details") or {}).get("submission_count") or 0
                ),
                Chargeback.updated_at: now,
            }
        ).where(Chargeback.id == cb_id)
        open_unmatched = cb["reversed_at"] is None and cb["closed_at"] is None
        if open_unmatched and await _reverse(cb, _fee(dispute), actor):
            cb["reversed_at"] = now
        if status in CLOSED and cb["closed_at"] is None:
            await _close(cb, status, dispute, actor)
    return cb_id


async def _payments(payment_intent: str) -> list[dict[str, Any]]:
    if not payment_intent:
        return []
    return await for_update(
        Payment.select()
        .where((Payment.stripe_payment_intent == payment_intent) & (Payment.status == "succeeded"))
        .order_by(Payment.id, ascending=False)
    )


@dataclass
class _Take:
    """What one chargeback takes back from one payment."""

    payment: dict[str, Any]
    unapplied: int = 0
    invoices: list[tuple[int, int]] = field(default_factory=list)  # (invoice, amount)
    applied: dict[int, int] = field(default_factory=dict)  # invoice -> net applied before
    loss: int = 0  # Stripe's dispute fee, and any part the payment no longer holds

    @property
    def ar(self) -> int:
        return sum(a for _, a in self.invoices)


async def _reverse(cb: dict[str, Any], fee: int, actor: Actor) -> bool:
    """Take the disputed amount back from the payment(s); False when none is recorded yet."""
    payments = await _payments(cb["stripe_payment_intent"])
    if not payments:
        return False
    cb_id = int(cb["id"])
    remaining = int(cb["amount_minor"])
    takes: list[_Take] = []
    for payment in payments:
        take = _Take(payment, unapplied=min(int(payment["unapplied_minor"]), remaining))
        remaining -= take.unapplied
        for invoice_id, applied in await _net_allocations(int(payment["id"])):
            if remaining <= 0:
                break
            amount = min(applied, remaining)
            take.invoices.append((invoice_id, amount))
            take.applied[invoice_id] = applied
            remaining -= amount
        takes.append(take)
        if remaining <= 0:
            break
    # The fee, and should the payments hold less than the dispute (never expected), the
    # rest: both are losses, carried by the first payment's entry.
    takes[0].loss = fee + remaining
    now = datetime.now(UTC)
    for take in takes:
        await _withdraw(cb, take, actor, now)
    await Chargeback.update(
        {
            Chargeback.reversed_at: now,
            Chargeback.reversed_minor: int(cb["amount_minor"]) - remaining,
        }
    ).where(Chargeback.id == cb_id)
    await record(
        AuditRecord(
            actor,
            "chargeback.funds_withdrawn",
            "chargeback",
            cb_id,
            data={"reversed": int(cb["amount_minor"]) - remaining, "fee": fee},
        )
    )
    return True


async def _withdraw(cb: dict[str, Any], take: _Take, actor: Actor, now: datetime) -> None:
    cb_id = int(cb["id"])
    payment_id = int(take.payment["id"])
    account_id = int(take.payment["billing_account"])
    for invoice_id, amount in take.invoices:
        await _reopen(invoice_id, amount)
    if take.invoices:
        await Allocation.insert(
            *[
                Allocation(payment=payment_id, invoice=i, amount_minor=-a, created_at=now)
                for i, a in take.invoices
            ]
        )
    rows = [
        ChargebackReversal(
            chargeback=cb_id,
            payment=payment_id,
            billing_account=account_id,
            invoice=i,
            amount_minor=a,
            created_at=now,
        )
        for i, a in take.invoices
    ]
    if take.unapplied:
        rows.append(
            ChargebackReversal(
                chargeback=cb_id,
                payment=payment_id,
                billing_account=account_id,
                invoice=None,
                amount_minor=take.unapplied,
                created_at=now,
            )
        )
    fx_reversed = await _reverse_fx(cb, take, rows, now)
    if rows:
        await ChargebackReversal.insert(*rows)
    await Payment.update(
        {
            Payment.status: "disputed",
            Payment.unapplied_minor: int(take.payment["unapplied_minor"]) - take.unapplied,
        }
    ).where(Payment.id == payment_id)
    await post(
        EntrySpec(
            issuing_entity_id=await _issuing_entity(account_id),
            currency=take.payment["currency"],
            effective_date=now.date(),
            source_type="chargeback",
            source_id=cb_id,
            event=f"withdrawn-p{payment_id}",
            description=f"Chargeback {cb['stripe_dispute']}: funds withdrawn",
            lines=[
                debit(acct.AR, take.ar, billing_account_id=account_id),
                debit(acct.UNAPPLIED_CASH, take.unapplied, billing_account_id=account_id),
                debit(acct.DISPUTE_LOSSES, take.loss),
                credit(acct.STRIPE_BALANCE, take.ar + take.unapplied + take.loss),
            ],
        )
    )
    source = f"chargeback:{cb_id}"
    note = f"Chargeback {cb['stripe_dispute']}"
    for invoice_id in [i for i, _ in take.invoices] + [None]:
        await pause_in_tx(
            account_id,
            reason="chargeback",
            actor=actor,
            invoice_id=invoice_id,
            until=None,
            note=note,
            source=source,
        )
    await record(
        AuditRecord(
            actor,
            "payment.disputed",
            "payment",
            payment_id,
            data={
                "chargeback": cb_id,
                "invoices": {str(i): a for i, a in take.invoices},
                "unapplied": take.unapplied,
                "fx_reversed": fx_reversed,
            },
        )
    )


async def _reverse_fx(
    cb: dict[str, Any], take: _Take, rows: list[ChargebackReversal], now: datetime
) -> int:
    """Reverse the share of the realized FX difference that went with the money taken back
    from each invoice (what earlier chargebacks of the payment took and gave back
    counted), noted on the reversal rows; one entry per payment. Returns the total."""
    payment_id = int(take.payment["id"])
    standing = await standing_realized_fx(payment_id, [i for i, _ in take.invoices])
    if standing is None:
        return 0
    earlier: dict[int, int] = defaultdict(int)
    for r in await ChargebackReversal.select(
        ChargebackReversal.invoice,
        ChargebackReversal.fx_minor,
        ChargebackReversal.fx_reinstated_minor,
    ).where((ChargebackReversal.payment == payment_id) & ChargebackReversal.invoice.is_not_null()):
        earlier[int(r["invoice"])] += int(r["fx_minor"]) - int(r["fx_reinstated_minor"])
    shares = {
        invoice_id: fx_share(
            standing.by_invoice.get(invoice_id, 0) - earlier[invoice_id],
            amount,
            take.applied[invoice_id],
            standing.currency,
        )
        for invoice_id, amount in take.invoices
    }
    for row in rows:
        if row.invoice is not None:
            row.fx_minor = shares.get(int(row.invoice), 0)
    total = sum(shares.values())
    if total:
        await post(
            EntrySpec(
                issuing_entity_id=standing.issuing_entity_id,
                currency=standing.currency,
                effective_date=now.date(),
                source_type="chargeback",
                source_id=int(cb["id"]),
                event=f"fx-reversed-p{payment_id}",
                description=f"Chargeback {cb['stripe_dispute']}: realized FX reversed",
                lines=realized_fx_lines(-total, int(take.payment["billing_account"])),
            )
        )
    return total


async def _reinstate_fx(
    cb: dict[str, Any],
    payment_id: int,
    account_id: int,
    given_back: list[tuple[dict[str, Any], int]],
    now: datetime,
) -> None:
    """Won: post again the share of each reversal row's realized FX that went with the
    money given back to its invoice (``given_back``: reversal row, amount re-applied)."""
    reversed_entry = (
        await JournalEntry.select(JournalEntry.currency, JournalEntry.issuing_entity)
        .where(
            (JournalEntry.source_type == "chargeback")
            & (JournalEntry.source_id == int(cb["id"]))
            & (JournalEntry.event == f"fx-reversed-p{payment_id}")
        )
        .first()
    )
    if reversed_entry is None:  # nothing was reversed for this payment
        return
    total = 0
    for row, applied in given_back:
        share = fx_share(
            int(row["fx_minor"]), applied, int(row["amount_minor"]), reversed_entry["currency"]
        )
        if share:
            await ChargebackReversal.update({ChargebackReversal.fx_reinstated_minor: share}).where(
                ChargebackReversal.id == row["id"]
            )
            total += share
    if total:
        await post(
            EntrySpec(
                issuing_entity_id=int(reversed_entry["issuing_entity"]),
                currency=reversed_entry["currency"],
                effective_date=now.date(),
                source_type="chargeback",
                source_id=int(cb["id"]),
                event=f"fx-reinstated-p{payment_id}",
                description=f"Chargeback {cb['stripe_dispute']} won: realized FX posted again",
                lines=realized_fx_lines(total, account_id),
            )
        )


async def _net_allocations(payment_id: int) -> list[tuple[int, int]]:
    """What the payment still has applied per invoice, newest allocation first."""
    rows = await Allocation.select(
        Allocation.id, Allocation.invoice, Allocation.amount_minor
    ).where(Allocation.payment == payment_id)
    net: dict[int, int] = defaultdict(int)
    newest: dict[int, int] = {}
    for r in rows:
        net[int(r["invoice"])] += int(r["amount_minor"])
        newest[int(r["invoice"])] = max(newest.get(int(r["invoice"]), 0), int(r["id"]))
    return [(i, net[i]) for i in sorted(net, key=lambda i: newest[i], reverse=True) if net[i] > 0]


async def _reopen(invoice_id: int, amount: int) -> None:
    inv = await for_update(
        Invoice.select(Invoice.paid_minor, Invoice.balance_minor).where(Invoice.id == invoice_id)
    ).first()
    assert inv is not None
    await Invoice.update(
        {
            Invoice.paid_minor: int(inv["paid_minor"]) - amount,
            Invoice.balance_minor: int(inv["balance_minor"]) + amount,
            Invoice.status: "open",
            Invoice.closed_at: None,
        }
    ).where(Invoice.id == invoice_id)


async def _issuing_entity(billing_account_id: int) -> int:
    row = (
        await BillingAccount.select(BillingAccount.issuing_entity)
        .where(BillingAccount.id == billing_account_id)
        .first()
    )
    assert row is not None
    return int(row["issuing_entity"])


async def _close(
    cb: dict[str, Any], outcome: str, dispute: Mapping[str, Any], actor: Actor
) -> None:
    cb_id = int(cb["id"])
    now = datetime.now(UTC)
    reinstated = 0
    if cb["reversed_at"] is not None and outcome == "won":
        reinstated = await _reinstate(cb, now)
    if cb["reversed_at"] is not None:
        payment_ids = {
            int(r["payment"])
            for r in await ChargebackReversal.select(ChargebackReversal.payment).where(
                ChargebackReversal.chargeback == cb_id
            )
        }
        if payment_ids:
            await Payment.update(
                {Payment.status: "succeeded" if outcome == "won" else "reversed"}
            ).where(Payment.id.is_in(sorted(payment_ids)))
    await lift_pauses_in_tx(f"chargeback:{cb_id}", actor)
    await Chargeback.update(
        {
            Chargeback.status: outcome,
            Chargeback.closed_at: now,
            Chargeback.reinstated_minor: reinstated,
        }
    ).where(Chargeback.id == cb_id)
    await record(
        AuditRecord(
            actor,
            f"chargeback.{outcome}",
            "chargeback",
            cb_id,
            data={
                "dispute": dispute["id"],
                "reinstated": reinstated,
                "matched": cb["reversed_at"] is not None,
            },
        )
    )


async def _reinstate(cb: dict[str, Any], now: datetime) -> int:
    """Won: give each payment back what was taken, to the same invoices while open."""
    cb_id = int(cb["id"])
    rows = await ChargebackReversal.select().where(ChargebackReversal.chargeback == cb_id)
    by_payment: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_payment[int(r["payment"])].append(r)
    total = 0
    for payment_id, reversals in sorted(by_payment.items()):
        payment = await for_update(Payment.select().where(Payment.id == payment_id)).first()
        assert payment is not None
        account_id = int(payment["billing_account"])
        applied: list[tuple[int, int]] = []
        given_back: list[tuple[dict[str, Any], int]] = []
        to_unapplied = 0
        for r in reversals:
            amount = int(r["amount_minor"])
            if r["invoice"] is None:
                to_unapplied += amount
                continue
            inv = await for_update(
                Invoice.select(
                    Invoice.status, Invoice.paid_minor, Invoice.balance_minor, Invoice.currency
                ).where(Invoice.id == r["invoice"])
            ).first()
            assert inv is not None
            usable = inv["status"] == "open" and inv["currency"] == payment["currency"]
            apply = min(amount, int(inv["balance_minor"])) if usable else 0
            if apply:
                balance = int(inv["balance_minor"]) - apply
                await Invoice.update(
                    {
                        Invoice.paid_minor: int(inv["paid_minor"]) + apply,
                        Invoice.balance_minor: balance,
                        Invoice.status: "paid" if balance == 0 else "open",
                        Invoice.closed_at: now if balance == 0 else None,
                    }
                ).where(Invoice.id == r["invoice"])
                applied.append((int(r["invoice"]), apply))
                given_back.append((r, apply))
                await ChargebackReversal.update({ChargebackReversal.reapplied_minor: apply}).where(
                    ChargebackReversal.id == r["id"]
                )
            to_unapplied += amount - apply
        if applied:
            await Allocation.insert(
                *[
                    Allocation(payment=payment_id, invoice=i, amount_minor=a, created_at=now)
                    for i, a in applied
                ]
            )
        await Payment.update(
            {Payment.unapplied_minor: int(payment["unapplied_minor"]) + to_unapplied}
        ).where(Payment.id == payment_id)
        await _reinstate_fx(cb, payment_id, account_id, given_back, now)
        ar = sum(a for _, a in applied)
        await post(
            EntrySpec(
                issuing_entity_id=await _issuing_entity(account_id),
                currency=payment["currency"],
                effective_date=now.date(),
                source_type="chargeback",
                source_id=cb_id,
                event=f"reinstated-p{payment_id}",
                description=f"Chargeback {cb['stripe_dispute']} won: funds reinstated",
                lines=[
                    debit(acct.STRIPE_BALANCE, ar + to_unapplied),
                    credit(acct.AR, ar, billing_account_id=account_id),
                    credit(acct.UNAPPLIED_CASH, to_unapplied, billing_account_id=account_id),
                ],
            )
        )
        total += ar + to_unapplied
    return total


# --------------------------------------------------------------------- evidence


async def submit_evidence(
    chargeback_id: int,
    values: Mapping[str, str],
    *,
    submit: bool,
    actor: Actor,
    client: stripe.StripeClient | None = None,
) -> int:
    """Send evidence to Stripe (staged, or submitted for review) and mirror the result."""
    evidence: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, raw in values.items():
        item = EVIDENCE_FIELDS.get(name)
        value = (raw or "").strip()
        if item is None or not value:
            continue
        if len(value) > MAX_TEXT:
            errors[name] = f"Keep this under {MAX_TEXT} characters."
        elif item.kind == "file" and not (value.startswith("file_") and value.isascii()):
            errors[name] = "Enter the id of a file uploaded to Stripe (it starts with file_)."
        else:
            evidence[name] = value
    if errors:
        raise ValidationFailed(errors)
    if not evidence and not submit:
        raise ValidationFailed({"evidence": "Fill in at least one item of the checklist."})
    cb = await Chargeback.select().where(Chargeback.id == chargeback_id).first()
    if cb is None:
        raise NotFound("chargeback")
    if cb["status"] != "open" or cb["stripe_status"] not in (
        "needs_response",
        "warning_needs_response",
    ):
        raise Conflict("This chargeback no longer takes evidence.")
    payload = json.dumps({"evidence": evidence, "submit": submit}, sort_keys=True)
    key = f"chargeback-{chargeback_id}-evidence-{hashlib.sha256(payload.encode()).hexdigest()[:24]}"
    stripe_client = client or default_client()
    try:
        dispute = await asyncio.to_thread(
            stripe_client.v1.disputes.update,
            cb["stripe_dispute"],
            params={"evidence": evidence, "submit": submit},  # type: ignore[arg-type]
            options={"idempotency_key": key},
        )
    except stripe.InvalidRequestError as exc:
        raise Conflict(exc.user_message or "Stripe refused the evidence.") from exc
    except stripe.StripeError as exc:
        raise Conflict("Stripe did not answer: nothing was sent. Try again in a moment.") from exc
    await record(
        AuditRecord(
            actor,
            "chargeback.evidence_submitted" if submit else "chargeback.evidence_saved",
            "chargeback",
            chargeback_id,
            data={"fields": sorted(evidence)},
        )
    )
    return await apply_dispute(dispute.to_dict(recursive=True), actor=actor)


# ---------------------------------------------------------------------- reading


def days_left(due: datetime | None, now: datetime) -> int | None:
    if due is None:
        return None
    return (due.date() - now.date()).days


async def list_chargebacks(status: str | None = None) -> list[dict[str, Any]]:
    query = Chargeback.select().order_by(Chargeback.created_at, ascending=False).limit(500)
    if status in ("open", "won", "lost"):
        query = query.where(Chargeback.status == status)
    rows = await query
    now = datetime.now(UTC)
    for r in rows:
        r["days_left"] = days_left(r["evidence_due_by"], now) if r["status"] == "open" else None
    return rows


async def chargeback_detail(chargeback_id: int) -> dict[str, Any]:
    cb = await Chargeback.select().where(Chargeback.id == chargeback_id).first()
    if cb is None:
        raise NotFound("chargeback")
    evidence = json.loads(cb["evidence"] or "{}")
    now = datetime.now(UTC)
    reversals = await ChargebackReversal.select(
        ChargebackReversal.all_columns(),
        ChargebackReversal.invoice.number.as_alias("invoice_number"),
        ChargebackReversal.billing_account.name.as_alias("account_name"),
    ).where(ChargebackReversal.chargeback == chargeback_id)
    return {
        **cb,
        "days_left": days_left(cb["evidence_due_by"], now) if cb["status"] == "open" else None,
        "checklist": [
            {"item": item, "value": evidence.get(item.field, "")} for item in EVIDENCE_CHECKLIST
        ],
        "provided": sum(1 for item in EVIDENCE_CHECKLIST if evidence.get(item.field)),
        "accepts_evidence": cb["status"] == "open"
        and cb["stripe_status"] in ("needs_response", "warning_needs_response"),
        "reversals": reversals,
    }
