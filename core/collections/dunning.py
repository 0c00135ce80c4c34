"""Dunning: schedules, the daily reminder run, pauses and promises to pay.

The run (``run_dunning(today, …)``) picks candidate invoices in one read, then for each
one claims its step in a transaction of its own: the invoice row is locked, its state is
read again, and a ``DunningReminder`` row (unique per invoice and step) is inserted and
committed *before* the email is sent; the row is marked ``sent`` afterwards. A second
run, a retry or a concurrent worker finds the row and sends nothing: at most one email
per (invoice, step). A reminder the SMTP server refused is marked ``failed`` and may be
claimed again by a later run while its step is still current.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from core.audit.log import Actor, AuditRecord, record
from core.collections.dunning_rules import (
    DEFAULT_OFFSETS,
    MIN_OFFSET,
    InvoiceDunning,
    Pause,
    ScheduleError,
    blocked_reason,
    format_offsets,
    next_step,
    parse_offsets,
    step_label,
    step_to_send,
)
from core.collections.tables import (
    ChargebackReversal,
    DunningPause,
    DunningReminder,
    DunningSchedule,
    PromiseToPay,
)
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.money import currency, parse_amount

log = structlog.get_logger("ledgerline.dunning")

PAUSE_REASONS = ("chargeback", "dispute", "manual")


@dataclass(frozen=True, slots=True)
class Reminder:
    """What an email template needs to remind a customer of one invoice."""

    invoice_id: int
    invoice_number: str
    billing_account_name: str
    recipient: str
    currency: str
    total_minor: int
    balance_minor: int
    due_date: date
    step_offset: int
    step_label: str
    link: str


@dataclass(frozen=True, slots=True)
class Email:
    subject: str
    text: str
    html: str | None = None


Compose = Callable[[Reminder], Email]
Send = Callable[[str, str, str, str | None], Awaitable[str]]  # to, subject, text, html


@dataclass
class RunResult:
    sent: list[tuple[int, int]] = field(default_factory=list)  # (invoice, step)
    failed: list[tuple[int, int]] = field(default_factory=list)
    skipped: list[tuple[int, int]] = field(default_factory=list)  # no recipient


# ------------------------------------------------------------------------ schedules


async def schedules() -> tuple[tuple[int, ...], dict[int, tuple[int, ...]]]:
    """(default offsets, overrides by billing account)."""
    default = DEFAULT_OFFSETS
    overrides: dict[int, tuple[int, ...]] = {}
    for row in await DunningSchedule.select():
        offsets = parse_offsets(row["offsets"])
        if row["billing_account"] is None:
            default = offsets
        else:
            overrides[int(row["billing_account"])] = offsets
    return default, overrides


async def schedule_for(billing_account_id: int) -> tuple[int, ...]:
    default, overrides = await schedules()
    return overrides.get(billing_account_id, default)


async def set_schedule(billing_account_id: int | None, text: str, actor: Actor) -> tuple[int, ...]:
    """Set the default schedule (``billing_account_id`` None) or an account's override.
    An empty text for an account removes its override (it follows the default again)."""
    field_name = "offsets"
    if billing_account_id is not None and not text.strip():
        async with transaction():
            await DunningSchedule.delete().where(
                DunningSchedule.billing_account == billing_account_id
            )
            await record(
                AuditRecord(actor, "dunning.schedule_reset", "billing_account", billing_account_id)
            )
        return await schedule_for(billing_account_id)
    try:
        offsets = parse_offsets(text)
    except ScheduleError as exc:
        raise ValidationFailed({field_name: str(exc)}) from exc
    stored = format_offsets(offsets)
    async with transaction():
        if billing_account_id is not None:
            exists = await BillingAccount.exists().where(BillingAccount.id == billing_account_id)
            if not exists:
                raise NotFound("billing account")
            where = DunningSchedule.billing_account == billing_account_id
        else:
            where = DunningSchedule.billing_account.is_null()
        row = await for_update(DunningSchedule.select(DunningSchedule.id).where(where)).first()
        now = datetime.now(UTC)
        if row is None:
            await DunningSchedule.insert(
                DunningSchedule(
                    billing_account=billing_account_id,
                    offsets=stored,
                    updated_at=now,
                    updated_by=f"{actor.type}:{actor.id}",
                )
            )
        else:
            await DunningSchedule.update(
                {
                    DunningSchedule.offsets: stored,
                    DunningSchedule.updated_at: now,
                    DunningSchedule.updated_by: f"{actor.type}:{actor.id}",
                }
            ).where(DunningSchedule.id == row["id"])
        await record(
            AuditRecord(
                actor,
                "dunning.schedule_set",
                "billing_account" if billing_account_id else "dunning_schedule",
                billing_account_id or "default",
                data={"offsets": list(offsets)},
            )
        )
    return offsets


# ----------------------------------------------------------------- invoice states


async def disputed_invoice_ids(invoice_ids: Sequence[int]) -> set[int]:
    """Invoices with an open chargeback against a payment applied to them."""
    if not invoice_ids:
        return set()
    rows = await ChargebackReversal.select(ChargebackReversal.invoice).where(
        ChargebackReversal.invoice.is_in(list(invoice_ids))
        & (ChargebackReversal.chargeback.status == "open")
    )
    return {int(r["invoice"]) for r in rows}


async def dunning_states(invoices: Sequence[dict[str, Any]]) -> dict[int, InvoiceDunning]:
    """The rules' view of each invoice row (needs id, status, balance_minor, due_date,
    billing_account): pauses, promises and open chargebacks included."""
    ids = [int(i["id"]) for i in invoices]
    accounts = sorted({int(i["billing_account"]) for i in invoices})
    pauses_by_invoice: dict[int, list[Pause]] = defaultdict(list)
    pauses_by_account: dict[int, list[Pause]] = defaultdict(list)
    promises: dict[int, list[date]] = defaultdict(list)
    if ids:
        for p in await DunningPause.select().where(
            DunningPause.lifted_at.is_null()
            & (DunningPause.billing_account.is_in(accounts) | DunningPause.invoice.is_in(ids))
        ):
            pause = Pause(until=p["until"])
            if p["invoice"] is None:
                pauses_by_account[int(p["billing_account"])].append(pause)
            else:
                pauses_by_invoice[int(p["invoice"])].append(pause)
        for pr in await PromiseToPay.select(PromiseToPay.invoice, PromiseToPay.promised_date).where(
            PromiseToPay.invoice.is_in(ids) & (PromiseToPay.status == "open")
        ):
            promises[int(pr["invoice"])].append(pr["promised_date"])
    disputed = await disputed_invoice_ids(ids)
    return {
        int(i["id"]): InvoiceDunning(
            status=i["status"],
            balance_minor=int(i["balance_minor"]),
            due_date=i["due_date"],
            disputed=int(i["id"]) in disputed,
            pauses=tuple(
                pauses_by_invoice[int(i["id"])] + pauses_by_account[int(i["billing_account"])]
            ),
            promised_until=tuple(promises[int(i["id"])]),
        )
        for i in invoices
    }


async def _done_steps(invoice_ids: Sequence[int]) -> dict[int, set[int]]:
    done: dict[int, set[int]] = defaultdict(set)
    if invoice_ids:
        for r in await DunningReminder.select(
            DunningReminder.invoice, DunningReminder.step_offset
        ).where(DunningReminder.invoice.is_in(list(invoice_ids))):
            done[int(r["invoice"])].add(int(r["step_offset"]))
    return done


_INVOICE_COLUMNS = (
    Invoice.id,
    Invoice.number,
    Invoice.status,
    Invoice.currency,
    Invoice.total_minor,
    Invoice.balance_minor,
    Invoice.due_date,
    Invoice.billing_account,
)


# -------------------------------------------------------------------------- the run


async def run_dunning(
    today: date,
    *,
    base_url: str,
    compose: Compose,
    send: Send,
    actor: Actor | None = None,
) -> RunResult:
    """Send today's reminders (see the module docstring). Safe to run any number of times."""
    actor = actor or Actor.system("dunning")
    default, overrides = await schedules()
    lead = -min(min(default), *(min(o) for o in overrides.values()), 0)
    candidates = await Invoice.select(*_INVOICE_COLUMNS).where(
        (Invoice.status == "open")
        & (Invoice.balance_minor > 0)
        & Invoice.due_date.is_not_null()
        & (Invoice.due_date <= today + timedelta(days=max(lead, -MIN_OFFSET)))
    )
    states = await dunning_states(candidates)
    done = await _done_steps([int(c["id"]) for c in candidates])
    result = RunResult()
    for inv in candidates:
        invoice_id = int(inv["id"])
        offsets = overrides.get(int(inv["billing_account"]), default)
        step = step_to_send(states[invoice_id], offsets, today, done[invoice_id])
        if step is None:
            step = await _failed_step_to_retry(invoice_id, states[invoice_id], offsets, today)
        if step is None:
            continue
        claimed = await _claim(invoice_id, step, offsets, today, base_url, actor)
        if claimed is None:
            continue
        reminder_id, reminder = claimed
        if not reminder.recipient:
            result.skipped.append((invoice_id, step))
            continue
        await _deliver(reminder_id, reminder, compose, send, actor, result)
    log.info(
        "dunning run",
        day=today.isoformat(),
        sent=len(result.sent),
        failed=len(result.failed),
        skipped=len(result.skipped),
    )
    return result


async def _failed_step_to_retry(
    invoice_id: int, state: InvoiceDunning, offsets: Sequence[int], today: date
) -> int | None:
    """A current step whose reminder the SMTP server refused may be tried again."""
    step = step_to_send(state, offsets, today, ())
    if step is None:
        return None
    failed = await DunningReminder.exists().where(
        (DunningReminder.invoice == invoice_id)
        & (DunningReminder.step_offset == step)
        & (DunningReminder.status == "failed")
    )
    return step if failed else None


async def _claim(
    invoice_id: int,
    step: int,
    offsets: Sequence[int],
    today: date,
    base_url: str,
    actor: Actor,
) -> tuple[int, Reminder] | None:
    """Lock the invoice, check again, and record the reminder (committed on return)."""
    async with transaction():
        inv = await for_update(
            Invoice.select(*_INVOICE_COLUMNS).where(Invoice.id == invoice_id)
        ).first()
        if inv is None:
            return None
        state = (await dunning_states([inv]))[invoice_id]
        if step_to_send(state, offsets, today, ()) != step:
            return None
        account = (
            await BillingAccount.select(BillingAccount.name, BillingAccount.bill_to_email)
            .where(BillingAccount.id == inv["billing_account"])
            .first()
        )
        assert account is not None
        recipient = account["bill_to_email"] or ""
        status = "sending" if recipient else "skipped"
        error = "" if recipient else "The billing account has no bill-to email address."
        now = datetime.now(UTC)
        existing = await for_update(
            DunningReminder.select(DunningReminder.id, DunningReminder.status).where(
                (DunningReminder.invoice == invoice_id) & (DunningReminder.step_offset == step)
            )
        ).first()
        if existing is not None:
            if existing["status"] != "failed":
                return None
            reminder_id = int(existing["id"])
            await DunningReminder.update(
                {
                    DunningReminder.status: status,
                    DunningReminder.recipient: recipient,
                    DunningReminder.run_date: today,
                    DunningReminder.error: error,
                }
            ).where(DunningReminder.id == reminder_id)
        else:
            rows = await DunningReminder.insert(
                DunningReminder(
                    invoice=invoice_id,
                    billing_account=inv["billing_account"],
                    step_offset=step,
                    status=status,
                    recipient=recipient,
                    run_date=today,
                    error=error,
                    created_at=now,
                )
            ).on_conflict(action="DO NOTHING")
            if not rows:
                return None  # another run claimed this step a moment ago
            reminder_id = int(rows[0]["id"])
        await record(
            AuditRecord(
                actor,
                "dunning.reminder_claimed" if recipient else "dunning.reminder_skipped",
                "invoice",
                invoice_id,
                data={"step": step, "reminder": reminder_id},
            )
        )
    return reminder_id, Reminder(
        invoice_id=invoice_id,
        invoice_number=inv["number"] or f"#{invoice_id}",
        billing_account_name=account["name"],
        recipient=recipient,
        currency=inv["currency"],
        total_minor=int(inv["total_minor"]),
        balance_minor=int(inv["balance_minor"]),
        due_date=inv["due_date"],
        step_offset=step,
        step_label=step_label(step),
        link=f"{base_url.rstrip('/')}/invoices/{invoice_id}",
    )


async def _deliver(
    reminder_id: int,
    reminder: Reminder,
    compose: Compose,
    send: Send,
    actor: Actor,
    result: RunResult,
) -> None:
    key = (reminder.invoice_id, reminder.step_offset)
    try:
        email = compose(reminder)
        message_id = await send(reminder.recipient, email.subject, email.text, email.html)
    except (OSError, ValueError) as exc:  # smtplib errors are OSErrors
        async with transaction():
            await DunningReminder.update(
                {DunningReminder.status: "failed", DunningReminder.error: str(exc)[:2000]}
            ).where(DunningReminder.id == reminder_id)
            await record(
                AuditRecord(
                    actor,
                    "dunning.reminder_failed",
                    "invoice",
                    reminder.invoice_id,
                    data={"step": reminder.step_offset, "error": str(exc)[:300]},
                )
            )
        result.failed.append(key)
        return
    async with transaction():
        await DunningReminder.update(
            {
                DunningReminder.status: "sent",
                DunningReminder.sent_at: datetime.now(UTC),
                DunningReminder.message_id: message_id[:200],
                DunningReminder.error: "",
            }
        ).where(DunningReminder.id == reminder_id)
        await record(
            AuditRecord(
                actor,
                "dunning.reminder_sent",
                "invoice",
                reminder.invoice_id,
                data={"step": reminder.step_offset, "to": reminder.recipient},
            )
        )
    result.sent.append(key)


# ----------------------------------------------------------- pauses and promises


async def pause(
    billing_account_id: int,
    *,
    reason: str,
    actor: Actor,
    invoice_id: int | None = None,
    until: date | None = None,
    note: str = "",
    source: str = "",
) -> int:
    """Pause reminders for an invoice or a whole billing account (idempotent per source:
    an active pause of the same source and object is returned, not duplicated)."""
    if reason not in PAUSE_REASONS:
        raise ValidationFailed({"reason": "Choose chargeback, dispute or manual."})
    async with transaction():
        return await pause_in_tx(
            billing_account_id,
            reason=reason,
            actor=actor,
            invoice_id=invoice_id,
            until=until,
            note=note,
            source=source or f"{actor.type}:{actor.id}",
        )


async def pause_in_tx(
    billing_account_id: int,
    *,
    reason: str,
    actor: Actor,
    invoice_id: int | None,
    until: date | None,
    note: str,
    source: str,
) -> int:
    where = (
        (DunningPause.billing_account == billing_account_id)
        & (DunningPause.source == source)
        & DunningPause.lifted_at.is_null()
    )
    where &= (
        DunningPause.invoice.is_null() if invoice_id is None else DunningPause.invoice == invoice_id
    )
    existing = await DunningPause.select(DunningPause.id).where(where).first()
    if existing is not None:
        return int(existing["id"])
    [row] = await DunningPause.insert(
        DunningPause(
            billing_account=billing_account_id,
            invoice=invoice_id,
            reason=reason,
            source=source,
            note=note[:2000],
            until=until,
            created_at=datetime.now(UTC),
            created_by=f"{actor.type}:{actor.id}",
        )
    )
    pause_id = int(row["id"])
    await record(
        AuditRecord(
            actor,
            "dunning.paused",
            "invoice" if invoice_id else "billing_account",
            invoice_id or billing_account_id,
            reason_code=reason,
            data={"pause": pause_id, "until": until.isoformat() if until else None},
        )
    )
    return pause_id


async def lift_pauses_in_tx(source: str, actor: Actor) -> int:
    """Lift every active pause recorded by ``source`` (e.g. ``chargeback:12``)."""
    rows = (
        await DunningPause.update(
            {
                DunningPause.lifted_at: datetime.now(UTC),
                DunningPause.lifted_by: f"{actor.type}:{actor.id}",
            }
        )
        .where((DunningPause.source == source) & DunningPause.lifted_at.is_null())
        .returning(DunningPause.id)
    )
    if rows:
        await record(
            AuditRecord(
                actor, "dunning.resumed", "dunning_pause", source, data={"lifted": len(rows)}
            )
        )
    return len(rows)


async def resume(pause_id: int, actor: Actor) -> None:
    """Lift one manual pause (chargeback pauses are lifted when the chargeback closes)."""
    async with transaction():
        row = await for_update(DunningPause.select().where(DunningPause.id == pause_id)).first()
        if row is None:
            raise NotFound("pause")
        if row["lifted_at"] is not None:
            return
        if row["reason"] == "chargeback":
            raise Conflict("This pause ends when its chargeback is resolved.")
        await DunningPause.update(
            {
                DunningPause.lifted_at: datetime.now(UTC),
                DunningPause.lifted_by: f"{actor.type}:{actor.id}",
            }
        ).where(DunningPause.id == pause_id)
        await record(
            AuditRecord(
                actor,
                "dunning.resumed",
                "invoice" if row["invoice"] else "billing_account",
                row["invoice"] or row["billing_account"],
                data={"pause": pause_id},
            )
        )


async def record_promise(
    invoice_id: int,
    *,
    promised_date_text: str,
    amount_text: str,
    note: str,
    actor: Actor,
    today: date,
) -> int:
    """Collections staff record a promise to pay: reminders wait until the promised date."""
    errors: dict[str, str] = {}
    try:
        promised = date.fromisoformat(promised_date_text.strip())
    except ValueError:
        promised = None
        errors["promised_date"] = "Enter the promised date as YYYY-MM-DD."
    if promised is not None and not today <= promised <= today + timedelta(days=180):
        errors["promised_date"] = "The promised date must lie within the next 180 days."
    if len(note) > 2000:
        errors["note"] = "Keep the note under 2000 characters."
    async with transaction():
        inv = await for_update(
            Invoice.select(*_INVOICE_COLUMNS).where(Invoice.id == invoice_id)
        ).first()
        if inv is None:
            raise NotFound("invoice")
        amount_minor = 0
        try:
            amount_minor = parse_amount(amount_text, currency(inv["currency"])).to_minor()
        except ValueError as exc:
            errors["amount"] = str(exc)
        if "amount" not in errors and not 0 < amount_minor <= inv["balance_minor"]:
            errors["amount"] = "The amount must be above zero and at most the open balance."
        if inv["status"] != "open":
            errors["invoice"] = "Only an open invoice can have a promise to pay."
        if errors:
            raise ValidationFailed(errors)
        assert promised is not None
        [row] = await PromiseToPay.insert(
            PromiseToPay(
                invoice=invoice_id,
                billing_account=inv["billing_account"],
                promised_date=promised,
                amount_minor=amount_minor,
                currency=inv["currency"],
                note=note,
                status="open",
                created_by=f"{actor.type}:{actor.id}",
                created_at=datetime.now(UTC),
            )
        )
        promise_id = int(row["id"])
        await record(
            AuditRecord(
                actor,
                "dunning.promise_recorded",
                "invoice",
                invoice_id,
                data={
                    "promise": promise_id,
                    "date": promised.isoformat(),
                    "amount": amount_minor,
                },
            )
        )
    return promise_id


async def cancel_promise(promise_id: int, actor: Actor) -> None:
    async with transaction():
        row = await for_update(PromiseToPay.select().where(PromiseToPay.id == promise_id)).first()
        if row is None:
            raise NotFound("promise to pay")
        if row["status"] != "open":
            return
        await PromiseToPay.update({PromiseToPay.status: "cancelled"}).where(
            PromiseToPay.id == promise_id
        )
        await record(
            AuditRecord(
                actor,
                "dunning.promise_cancelled",
                "invoice",
                row["invoice"],
                data={"promise": promise_id},
            )
        )


# ------------------------------------------------------------------ staff overview


@dataclass(frozen=True, slots=True)
class OverdueRow:
    invoice_id: int
    number: str
    billing_account_id: int
    billing_account: str
    currency: str
    balance_minor: int
    due_date: date
    days_overdue: int
    blocked: str | None
    last_step: int | None
    last_status: str
    next_step: int | None
    promise: dict[str, Any] | None
    pauses: list[dict[str, Any]]


async def overdue_overview(today: date, limit: int = 200) -> list[OverdueRow]:
    """Open invoices past due (oldest first) with their dunning state, for collections."""
    invoices = (
        await Invoice.select(*_INVOICE_COLUMNS, Invoice.billing_account.name.as_alias("acct"))
        .where(
            (Invoice.status == "open")
            & (Invoice.balance_minor > 0)
            & Invoice.due_date.is_not_null()
            & (Invoice.due_date < today)
        )
        .order_by(Invoice.due_date)
        .limit(limit)
    )
    ids = [int(i["id"]) for i in invoices]
    states = await dunning_states(invoices)
    default, overrides = await schedules()
    last: dict[int, dict[str, Any]] = {}
    promises: dict[int, dict[str, Any]] = {}
    pauses: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        for r in await DunningReminder.select().where(DunningReminder.invoice.is_in(ids)):
            prev = last.get(int(r["invoice"]))
            if prev is None or r["step_offset"] > prev["step_offset"]:
                last[int(r["invoice"])] = r
        for p in await PromiseToPay.select().where(
            PromiseToPay.invoice.is_in(ids) & (PromiseToPay.status == "open")
        ):
            promises[int(p["invoice"])] = p
        accounts = sorted({int(i["billing_account"]) for i in invoices})
        for p in await DunningPause.select().where(
            DunningPause.lifted_at.is_null()
            & (DunningPause.invoice.is_in(ids) | DunningPause.billing_account.is_in(accounts))
        ):
            if p["until"] is not None and p["until"] < today:
                continue
            for inv in invoices:
                if p["invoice"] == inv["id"] or (
                    p["invoice"] is None and p["billing_account"] == inv["billing_account"]
                ):
                    pauses[int(inv["id"])].append(p)
    rows = []
    for inv in invoices:
        invoice_id = int(inv["id"])
        offsets = overrides.get(int(inv["billing_account"]), default)
        latest = last.get(invoice_id)
        promise = promises.get(invoice_id)
        rows.append(
            OverdueRow(
                invoice_id=invoice_id,
                number=inv["number"] or f"#{invoice_id}",
                billing_account_id=int(inv["billing_account"]),
                billing_account=inv["acct"],
                currency=inv["currency"],
                balance_minor=int(inv["balance_minor"]),
                due_date=inv["due_date"],
                days_overdue=(today - inv["due_date"]).days,
                blocked=blocked_reason(states[invoice_id], today),
                last_step=latest["step_offset"] if latest else None,
                last_status=latest["status"] if latest else "",
                next_step=next_step(offsets, inv["due_date"], today),
                promise=promise if promise and promise["promised_date"] >= today else None,
                pauses=pauses[invoice_id],
            )
        )
    return rows


async def reminders_for(invoice_id: int) -> list[dict[str, Any]]:
    return await (
        DunningReminder.select()
        .where(DunningReminder.invoice == invoice_id)
        .order_by(DunningReminder.step_offset)
    )


async def invoice_dunning(invoice_id: int, today: date) -> dict[str, Any]:
    """One invoice's dunning for staff: state, schedule, reminders, promises, pauses."""
    inv = (
        await Invoice.select(
            *_INVOICE_COLUMNS,
            Invoice.billing_account.name.as_alias("account_name"),
            Invoice.billing_account.bill_to_email.as_alias("bill_to_email"),
        )
        .where(Invoice.id == invoice_id)
        .first()
    )
    if inv is None or inv["status"] == "draft":
        raise NotFound("invoice")
    state = (await dunning_states([inv]))[invoice_id]
    account_id = int(inv["billing_account"])
    default, overrides = await schedules()
    offsets = overrides.get(account_id, default)
    pauses = (
        await DunningPause.select()
        .where(
            DunningPause.lifted_at.is_null()
            & (
                (DunningPause.invoice == invoice_id)
                | (DunningPause.invoice.is_null() & (DunningPause.billing_account == account_id))
            )
        )
        .order_by(DunningPause.id)
    )
    return {
        **inv,
        "blocked": blocked_reason(state, today),
        "offsets": offsets,
        "schedule_text": format_offsets(offsets),
        "own_schedule": account_id in overrides,
        "steps": [
            {
                "offset": o,
                "label": step_label(o),
                "date": inv["due_date"] + timedelta(days=o) if inv["due_date"] else None,
            }
            for o in offsets
        ],
        "reminders": await reminders_for(invoice_id),
        "promises": await PromiseToPay.select()
        .where(PromiseToPay.invoice == invoice_id)
        .order_by(PromiseToPay.id, ascending=False),
        "pauses": [p for p in pauses if p["until"] is None or p["until"] >= today],
    }
