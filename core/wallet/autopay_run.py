"""The daily autopay run: charge enrolled accounts' due invoices through core.payments.

``run_autopay(today)`` (called by the daily cron job, safe to run any number of times):

1. **Follow up** earlier tries still marked pending: read their attempt's status; a
   failed one gets its next try date from ``rules.next_try_at`` (+1, +3, +7 days, then
   no more) and its failure email is queued.
2. **Resume** tries that crashed half-way: a claim whose attempt was never created is
   abandoned (the invoices are free again); an attempt created but never sent to Stripe
   is charged now (the idempotency key comes from the attempt id, so nothing is charged
   twice).
3. **Plan** (``rules.plan_charges``): per enrolled account and currency, the open invoices
   due on or before ``today`` that no live attempt is collecting and that are not
   waiting for a retry.
4. **Charge** each plan: under the account's advisory lock, re-check and *claim* the
   invoices (an ``autopay_charge`` row, committed), then ``create_attempt(kind="autopay")``
   and ``charge_saved_method(off_session=True)``. A second run at the same time waits on
   the lock and then finds the invoices claimed: never two live attempts for an invoice.

Failure emails are sent by ``send_failure_notice`` (a job), claimed before sending like
receipts: at most once per try.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog

from core.audit.log import Actor, AuditRecord, record
from core.db import advisory_lock, transaction
from core.errors import DomainError
from core.identity.tables import BillingAccount, User
from core.invoicing.tables import Invoice
from core.money import Money, format_money
from core.notifications.mailer import mailer
from core.payments import attempts as pay
from core.wallet.rules import (
    MAX_TRIES,
    ChargePlan,
    DueInvoice,
    PastTry,
    method_label,
    next_try_at,
    plan_charges,
)
from core.wallet.tables import AutopayCharge, AutopayEnrollment, SavedPaymentMethod

log = structlog.get_logger("ledgerline.autopay")
SYSTEM = Actor.system("wallet.autopay")
_LOCK_PREFIX = 0x57A3 << 32
CLAIM_TIMEOUT = timedelta(minutes=15)  # a claim with no attempt after this is abandoned
NOT_SENT = ("ready",)  # attempt states: created, never sent to Stripe
FINAL_OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "canceled": "canceled"}
FINAL_OUTCOMES |= {"rejected": "canceled"}


@dataclass
class RunReport:
    charged: int = 0
    succeeded: int = 0
    failed: int = 0
    waiting: int = 0  # requires_action, pending approval, processing, unknown
    skipped: int = 0
    errors: int = 0  # unexpected failures (logged; the charge stays claimed for follow-up)
    notices: list[int] = field(default_factory=list)  # charge ids whose email is due


def _ids(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip().isdigit()]


# --------------------------------------------------------------------- follow up


async def follow_up(now: datetime, report: RunReport) -> None:
    """Bring pending charges up to date with their attempts."""
    pending = await AutopayCharge.select(
        AutopayCharge.id,
        AutopayCharge.attempt,
        AutopayCharge.try_number,
        AutopayCharge.created_at,
        AutopayCharge.attempt.status.as_alias("attempt_status"),
        AutopayCharge.attempt.failure_code.as_alias("failure_code"),
        AutopayCharge.attempt.failure_message.as_alias("failure_message"),
        AutopayCharge.attempt.updated_at.as_alias("attempt_updated_at"),
    ).where(AutopayCharge.outcome.is_in(["pending", "requires_action"]))
    for c in pending:
        if c["attempt"] is None:
            if c["created_at"] <= now - CLAIM_TIMEOUT:
                await AutopayCharge.update(
                    {AutopayCharge.outcome: "abandoned", AutopayCharge.resolved_at: now}
                ).where((AutopayCharge.id == c["id"]) & AutopayCharge.attempt.is_null())
            continue
        status = c["attempt_status"]
        if status in NOT_SENT:
            await _charge(c["id"], report)
            continue
        outcome = FINAL_OUTCOMES.get(status)
        if outcome is None:
            if status == "requires_action":
                await AutopayCharge.update({AutopayCharge.outcome: "requires_action"}).where(
                    AutopayCharge.id == c["id"]
                )
            continue
        await _resolve(c["id"], outcome, c, now, report)


async def _resolve(
    charge_id: int, outcome: str, attempt: dict[str, Any], now: datetime, report: RunReport
) -> None:
    failed = outcome == "failed"
    try_number = int(attempt["try_number"])
    retry_at = next_try_at(try_number, now) if failed else None
    async with transaction():
        rows = await (
            AutopayCharge.update(
                {
                    AutopayCharge.outcome: outcome,
                    AutopayCharge.failure_code: (attempt.get("failure_code") or "")[:64],
                    AutopayCharge.failure_message: attempt.get("failure_message") or "",
                    AutopayCharge.next_try_at: retry_at,
                    AutopayCharge.notice_status: "pending" if failed else "none",
                    AutopayCharge.resolved_at: now,
                }
            )
            .where(
                (AutopayCharge.id == charge_id)
                & AutopayCharge.outcome.is_in(["pending", "requires_action"])
            )
            .returning(AutopayCharge.id, AutopayCharge.billing_account)
        )
        if not rows:
            return  # another run resolved it
        await record(
            AuditRecord(
                SYSTEM,
                f"autopay.charge_{outcome}",
                "billing_account",
                rows[0]["billing_account"],
                data={
                    "charge": charge_id,
                    "attempt": attempt.get("attempt"),
                    "try": try_number,
                    "next_try_at": retry_at.isoformat() if retry_at else None,
                    "failure_code": attempt.get("failure_code") or "",
                },
            )
        )
    if failed:
        report.failed += 1
        report.notices.append(charge_id)
    elif outcome == "succeeded":
        report.succeeded += 1


# -------------------------------------------------------------------------- plan


async def _plans(today: date, now: datetime) -> tuple[list[ChargePlan], dict[int, dict]]:
    enrollments = {
        e["billing_account"]: e
        for e in await AutopayEnrollment.select(
            AutopayEnrollment.id,
            AutopayEnrollment.billing_account,
            AutopayEnrollment.payment_method,
            AutopayEnrollment.accepted_by_user,
            AutopayEnrollment.payment_method.stripe_payment_method.as_alias("stripe_pm"),
            AutopayEnrollment.payment_method.stripe_customer.as_alias("stripe_customer"),
            AutopayEnrollment.payment_method.removed_at.as_alias("method_removed_at"),
        ).where(AutopayEnrollment.active.eq(True))
    }
    accounts = sorted(a for a, e in enrollments.items() if e["method_removed_at"] is None)
    if not accounts:
        return [], enrollments
    invoices = await Invoice.select(
        Invoice.id,
        Invoice.billing_account,
        Invoice.currency,
        Invoice.due_date,
        Invoice.balance_minor,
    ).where(
        Invoice.billing_account.is_in(accounts)
        & (Invoice.status == "open")
        & (Invoice.document_type == "invoice")
        & (Invoice.due_date <= today)
        & (Invoice.balance_minor > 0)
    )
    ids = [i["id"] for i in invoices]
    live = frozenset(await pay.in_flight_by_invoice(ids))
    past = await _past_tries(ids, {a: enrollments[a]["id"] for a in accounts})
    due = [
        DueInvoice(i["id"], i["billing_account"], i["currency"], i["due_date"], i["balance_minor"])
        for i in invoices
    ]
    plans = plan_charges(due, today=today, now=now, live_invoice_ids=live, past_tries=past)
    return plans, enrollments


async def _past_tries(invoice_ids: list[int], enrollment_of: dict[int, int]) -> dict[int, PastTry]:
    """The latest try of each invoice under its account's current enrollment (a new
    enrollment starts counting again)."""
    if not invoice_ids:
        return {}
    wanted = set(invoice_ids)
    charges = (
        await AutopayCharge.select(
            AutopayCharge.id,
            AutopayCharge.billing_account,
            AutopayCharge.enrollment,
            AutopayCharge.invoice_ids,
            AutopayCharge.try_number,
            AutopayCharge.outcome,
            AutopayCharge.next_try_at,
        )
        .where(
            AutopayCharge.enrollment.is_in(sorted(set(enrollment_of.values())) or [-1])
            & (AutopayCharge.outcome != "abandoned")
        )
        .order_by(AutopayCharge.id)
    )
    past: dict[int, PastTry] = {}
    for c in charges:  # in id order: later tries overwrite earlier ones
        if enrollment_of.get(c["billing_account"]) != c["enrollment"]:
            continue
        for invoice_id in _ids(c["invoice_ids"]):
            if invoice_id in wanted:
                past[invoice_id] = PastTry(c["try_number"], c["outcome"], c["next_try_at"])
    return past


# ------------------------------------------------------------------------ charge


async def _claim(plan: ChargePlan, enrollment: dict, now: datetime) -> int | None:
    """Under the account's lock: re-check that no live attempt and no other pending
    claim covers these invoices, then record the claim. None: someone else has them."""
    async with transaction():
        await advisory_lock(_LOCK_PREFIX + plan.billing_account_id)
        if await pay.in_flight_by_invoice(list(plan.invoice_ids)):
            return None
        open_claims = await AutopayCharge.select(AutopayCharge.invoice_ids).where(
            (AutopayCharge.billing_account == plan.billing_account_id)
            & AutopayCharge.outcome.is_in(["pending", "requires_action"])
        )
        claimed = {i for c in open_claims for i in _ids(c["invoice_ids"])}
        if claimed & set(plan.invoice_ids):
            return None
        [row] = await AutopayCharge.insert(
            AutopayCharge(
                enrollment=enrollment["id"],
                billing_account=plan.billing_account_id,
                invoice_ids=",".join(str(i) for i in plan.invoice_ids),
                currency=plan.currency,
                amount_minor=plan.amount_minor,
                try_number=plan.try_number,
                outcome="pending",
                created_at=now,
            )
        )
    return int(row["id"])


async def _start(charge_id: int, plan: ChargePlan, enrollment: dict, root: int) -> int | None:
    """Create the attempt of a claim; None (claim canceled) when core.payments refuses."""
    balances = {
        r["id"]: r["balance_minor"]
        for r in await Invoice.select(Invoice.id, Invoice.balance_minor).where(
            Invoice.id.is_in(list(plan.invoice_ids))
        )
    }
    items = [pay.PayItem(i, balances.get(i, 0)) for i in plan.invoice_ids]
    try:
        attempt = await pay.create_attempt(
            organization_root_id=root,
            items=items,
            kind="autopay",
            user_id=enrollment["accepted_by_user"],
            actor=SYSTEM,
            stripe_customer=enrollment["stripe_customer"],
            payment_method=enrollment["stripe_pm"],
            off_session=True,
        )
    except DomainError as exc:
        log.warning("autopay attempt refused", charge_id=charge_id, error=str(exc))
        await AutopayCharge.update(
            {
                AutopayCharge.outcome: "canceled",
                AutopayCharge.failure_message: str(exc)[:500],
                AutopayCharge.resolved_at: datetime.now(UTC),
            }
        ).where(AutopayCharge.id == charge_id)
        return None
    await AutopayCharge.update({AutopayCharge.attempt: attempt.id}).where(
        AutopayCharge.id == charge_id
    )
    return attempt.id


async def _charge(charge_id: int, report: RunReport) -> None:
    row = (
        await AutopayCharge.select(
            AutopayCharge.attempt,
            AutopayCharge.attempt.stripe_customer.as_alias("stripe_customer"),
            AutopayCharge.attempt.stripe_payment_method.as_alias("stripe_pm"),
        )
        .where(AutopayCharge.id == charge_id)
        .first()
    )
    if row is None or row["attempt"] is None:
        return
    status = await pay.charge_saved_method(
        row["attempt"],
        stripe_customer=row["stripe_customer"],
        payment_method=row["stripe_pm"],
        actor=SYSTEM,
        off_session=True,
    )
    report.charged += 1
    log.info("autopay charged", charge_id=charge_id, attempt=row["attempt"], status=status)


async def _run_plan(
    plan: ChargePlan, enrollment: dict, roots: dict[int, int], now: datetime, report: RunReport
) -> None:
    charge_id = await _claim(plan, enrollment, now)
    if charge_id is None:
        report.skipped += 1
        return
    attempt_id = await _start(charge_id, plan, enrollment, roots[plan.billing_account_id])
    if attempt_id is None:
        report.skipped += 1
        return
    await _charge(charge_id, report)


async def run_autopay(today: date, now: datetime | None = None) -> RunReport:
    """The daily run (see the module docstring). Returns what it did."""
    now = now or datetime.now(UTC)
    report = RunReport()
    await follow_up(now, report)
    plans, enrollments = await _plans(today, now)
    roots = {
        r["id"]: r["root"]
        for r in await BillingAccount.select(
            BillingAccount.id, BillingAccount.organization.root_id.as_alias("root")
        ).where(BillingAccount.id.is_in([p.billing_account_id for p in plans] or [-1]))
    }
    for plan in plans:
        try:
            await _run_plan(plan, enrollments[plan.billing_account_id], roots, now, report)
        except Exception:  # one account's trouble must not stop the others' charges
            log.exception("autopay charge failed", billing_account=plan.billing_account_id)
            report.errors += 1
    await follow_up(now, report)  # record today's outcomes (and queue failure emails)
    waiting = await AutopayCharge.count().where(
        AutopayCharge.outcome.is_in(["pending", "requires_action"])
    )
    report.waiting = waiting
    return report


# ------------------------------------------------------------------ failure email


def failure_email(
    *,
    account: str,
    amount_minor: int,
    currency: str,
    method: str,
    reason: str,
    retry_at: datetime | None,
    base_url: str,
) -> tuple[str, str]:
    """Subject and text of the email after a failed autopay charge (pure)."""
    amount = format_money(Money.from_minor(amount_minor, currency))
    if retry_at is not None:
        next_step = (
            f"We will try again on {retry_at:%d %b %Y}. To avoid that, pay the invoices "
            "yourself or choose another payment method for autopay."
        )
    else:
        next_step = (
            f"This was the last of {MAX_TRIES} tries: autopay will not charge these invoices "
            "again. Please pay them yourself."
        )
    text = "\n".join(
        [
            f"The autopay charge of {amount} for billing account {account} to your "
            f"{method} did not go through.",
            "",
            f"Reason: {reason or 'declined by the card issuer'}",
            "",
            next_step,
            "",
            f"Autopay settings: {base_url}/wallet/autopay",
            f"Your invoices: {base_url}/invoices?status=open",
            "",
        ]
    )
    return f"Autopay charge failed for {account}: {amount}", text


async def pending_notices() -> list[int]:
    rows = await AutopayCharge.select(AutopayCharge.id).where(
        AutopayCharge.notice_status == "pending"
    )
    return [r["id"] for r in rows]


async def send_failure_notice(charge_id: int, base_url: str) -> str:
    """Email the person who accepted the mandate (or the account's bill-to address)
    about a failed charge; at most once (claimed before sending)."""
    async with transaction():
        claimed = await (
            AutopayCharge.update({AutopayCharge.notice_status: "sending"})
            .where((AutopayCharge.id == charge_id) & (AutopayCharge.notice_status == "pending"))
            .returning(AutopayCharge.id)
        )
    if not claimed:
        return "not_claimable"
    c = (
        await AutopayCharge.select(
            AutopayCharge.amount_minor,
            AutopayCharge.currency,
            AutopayCharge.failure_message,
            AutopayCharge.next_try_at,
            AutopayCharge.billing_account,
            AutopayCharge.billing_account.name.as_alias("account"),
            AutopayCharge.billing_account.bill_to_email.as_alias("bill_to"),
            AutopayCharge.enrollment.accepted_by_user.as_alias("user"),
            AutopayCharge.enrollment.payment_method.as_alias("method"),
        )
        .where(AutopayCharge.id == charge_id)
        .first()
    )
    assert c is not None
    user = await User.select(User.email, User.is_active).where(User.id == c["user"]).first()
    to = user["email"] if user and user["is_active"] else c["bill_to"]
    method = (
        await SavedPaymentMethod.select(SavedPaymentMethod.brand, SavedPaymentMethod.last4)
        .where(SavedPaymentMethod.id == c["method"])
        .first()
    )
    if not to:
        await AutopayCharge.update({AutopayCharge.notice_status: "skipped"}).where(
            AutopayCharge.id == charge_id
        )
        return "skipped"
    subject, text = failure_email(
        account=c["account"],
        amount_minor=c["amount_minor"],
        currency=c["currency"],
        method=method_label(method["brand"], method["last4"]) if method else "saved method",
        reason=c["failure_message"],
        retry_at=c["next_try_at"],
        base_url=base_url,
    )
    try:
        await mailer().send(to, subject, text)
    except Exception as exc:
        await AutopayCharge.update(
            {AutopayCharge.notice_status: "pending", AutopayCharge.notice_error: repr(exc)[:2000]}
        ).where(AutopayCharge.id == charge_id)
        raise
    async with transaction():
        await AutopayCharge.update({AutopayCharge.notice_status: "sent"}).where(
            AutopayCharge.id == charge_id
        )
        await record(
            AuditRecord(
                SYSTEM,
                "autopay.failure_notice_sent",
                "billing_account",
                c["billing_account"],
                data={"charge": charge_id},
            )
        )
    return "sent"
