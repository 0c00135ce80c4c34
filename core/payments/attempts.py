"""Payment attempts: one try at collecting money through Stripe for open invoices of one
customer group, in one currency.

Life of an attempt (``PaymentAttempt.status``)::

    pending_approval ──approve──▶ ready ──charge / checkout──▶ unknown ──▶ processing
          │                        │                             │           │
          └──reject──▶ rejected    └──(stale 24 h)──▶ canceled   ▼           ▼
                                                   succeeded | failed | requires_action

* ``ready``: may be charged (no approval needed, or approved).
* ``unknown``: a Stripe call was started and its outcome is not recorded yet (set and
  committed BEFORE the call). A crash leaves it here; ``reconcile`` repeats the call with
  the same idempotency key, so Stripe answers with the object it already made.
* ``processing``: Stripe has it (an open Checkout session, or a PaymentIntent still
  processing); ``settle_attempt`` re-reads it.

Exactly once: settling locks the attempt row, records one Payment per billing account
(unique index payment(attempt, billing_account) as a backstop) and marks the attempt
succeeded in the same transaction. Every Stripe call passes
``gateway.idempotency_key(attempt_id, operation)``.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
import structlog

from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import Conflict, DomainError, NotFound, ValidationFailed
from core.idempotency import store as idem
from core.identity import security
from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from core.identity.tables import BillingAccount, CustomerOrganization
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.payments import faults, gateway
from core.payments.allocation import AllocationRequest
from core.payments.fees import book_stripe_fee_quietly
from core.payments.rules import (
    OpenInvoice,
    approval_required,
    check_items,
    nearest_threshold,
    settlement_split,
)
from core.payments.services import record_payment
from core.payments.tables import PaymentAttempt, PaymentAttemptItem

log = structlog.get_logger("ledgerline.payments")

ACTIVE = ("pending_approval", "ready", "unknown", "processing", "requires_action")
FINAL = ("succeeded", "failed", "canceled", "rejected")
KINDS = ("checkout", "saved_method", "autopay", "api")
METADATA_KEY = "ledgerline_attempt"


# The user sees the object but their role does not allow this (a viewer paying, an
# approver approving their own payment): the identity area's refusal, shown as 403.
NotPermitted = security.NotPermitted


@dataclass(frozen=True, slots=True)
class PayItem:
    invoice_id: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    status: str
    approval_required: bool
    currency: str
    amount_minor: int
    kind: str = ""
    organization_id: int = 0
    created_by_user: int | None = None
    approved_by_user: int | None = None
    stripe_payment_intent: str = ""
    stripe_checkout_session: str = ""
    failure_message: str = ""
    created_at: datetime | None = None


_ATTEMPT_FIELDS = (
    "id",
    "status",
    "approval_required",
    "currency",
    "amount_minor",
    "kind",
    "created_by_user",
    "approved_by_user",
    "stripe_payment_intent",
    "stripe_checkout_session",
    "failure_message",
    "created_at",
)


def _attempt(row: dict[str, Any]) -> Attempt:
    return Attempt(organization_id=row["organization"], **{k: row[k] for k in _ATTEMPT_FIELDS})


async def get_attempt(attempt_id: int) -> Attempt:
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is None:
        raise NotFound("payment attempt")
    return _attempt(row)


async def attempt_items(attempt_id: int) -> list[dict[str, Any]]:
    return await (
        PaymentAttemptItem.select(
            PaymentAttemptItem.invoice,
            PaymentAttemptItem.billing_account,
            PaymentAttemptItem.amount_minor,
            PaymentAttemptItem.invoice.number.as_alias("number"),
            PaymentAttemptItem.billing_account.name.as_alias("account_name"),
        )
        .where(PaymentAttemptItem.attempt == attempt_id)
        .order_by(PaymentAttemptItem.id)
    )


async def scoped_attempt(attempt_id: int, scope: Scope) -> tuple[Attempt, list[dict[str, Any]]]:
    """An attempt the user may see: every billing account of it is in their scope."""
    if not 0 < attempt_id <= 2**31 - 1:
        raise NotFound("payment attempt")
    attempt = await get_attempt(attempt_id)
    items = await attempt_items(attempt_id)
    if not items or any(i["billing_account"] not in scope.billing_account_ids for i in items):
        raise NotFound("payment attempt")
    return attempt, items


# ------------------------------------------------------------------------------ create


async def _thresholds(account_ids: set[int]) -> list[int | None]:
    accounts = await BillingAccount.select(
        BillingAccount.id, BillingAccount.organization.path.as_alias("path")
    ).where(BillingAccount.id.is_in(sorted(account_ids) or [-1]))
    node_ids = {int(p) for a in accounts for p in a["path"].strip("/").split("/") if p}
    rows = await CustomerOrganization.select(
        CustomerOrganization.id, CustomerOrganization.approval_threshold_minor
    ).where(CustomerOrganization.id.is_in(sorted(node_ids) or [-1]))
    thresholds = {r["id"]: r["approval_threshold_minor"] for r in rows}
    return [nearest_threshold(a["path"], thresholds) for a in accounts]


async def in_flight_by_invoice(invoice_ids: Sequence[int]) -> dict[int, int]:
    """What attempts not finished yet are collecting for each invoice."""
    rows = await PaymentAttemptItem.select(
        PaymentAttemptItem.invoice, PaymentAttemptItem.amount_minor
    ).where(
        PaymentAttemptItem.invoice.is_in(list(invoice_ids) or [-1])
        & PaymentAttemptItem.attempt.status.is_in(list(ACTIVE))
    )
    totals: dict[int, int] = defaultdict(int)
    for r in rows:
        totals[r["invoice"]] += r["amount_minor"]
    return dict(totals)


async def create_attempt(
    *,
    organization_root_id: int,
    items: Sequence[PayItem],
    kind: str,
    user_id: int | None,
    actor: Actor,
    scope: Scope | None = None,
    stripe_customer: str = "",
    payment_method: str = "",
    off_session: bool = True,
    idempotency_record: int | None = None,
) -> Attempt:
    """Validate and record an attempt (nothing is sent to Stripe yet).

    Every invoice must be open, belong to the group ``organization_root_id`` and, when a
    ``scope`` is given, be in it (else ``NotFound``) with at least the payer role on its
    billing account (else ``NotPermitted``). Amounts: above zero and at most the open
    balance minus what other unfinished attempts are collecting; one currency. The
    attempt waits for approval when its amount exceeds the strictest approval threshold
    of its accounts (``rules.approval_required``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown attempt kind {kind!r}")
    ids = [i.invoice_id for i in items]
    if any(not 0 < i <= 2**31 - 1 for i in ids):
        raise NotFound("invoice")
    now = datetime.now(UTC)
    async with transaction():
        # Lock the invoices (in id order): two attempts for one invoice queue here, so
        # the in-flight check below cannot race.
        rows = await for_update(
            Invoice.select(
                Invoice.id,
                Invoice.number,
                Invoice.status,
                Invoice.currency,
                Invoice.balance_minor,
                Invoice.billing_account,
            )
            .where(Invoice.id.is_in(sorted(set(ids)) or [-1]))
            .order_by(Invoice.id)
        )
        by_id = {r["id"]: r for r in rows}
        account_ids = {r["billing_account"] for r in rows}
        roots = await BillingAccount.select(
            BillingAccount.id, BillingAccount.organization.root_id.as_alias("root")
        ).where(BillingAccount.id.is_in(sorted(account_ids) or [-1]))
        root_of = {r["id"]: r["root"] for r in roots}
        for invoice_id in ids:
            row = by_id.get(invoice_id)
            if row is None or row["status"] == "draft":
                raise NotFound("invoice")
            account = row["billing_account"]
            if root_of.get(account) != organization_root_id:
                raise NotFound("invoice")
            if scope is not None:
                if account not in scope.billing_account_ids:
                    raise NotFound("invoice")
                if not scope.may(CustomerRole.PAYER, account):
                    raise NotPermitted(
                        "Your role lets you view this invoice but not pay it. "
                        "Ask a payer or approver of your organization."
                    )
        in_flight = await in_flight_by_invoice(ids)
        open_invoices = {
            r["id"]: OpenInvoice(
                r["id"],
                r["number"] or f"#{r['id']}",
                r["currency"],
                r["balance_minor"],
                in_flight.get(r["id"], 0),
            )
            for r in rows
            if r["status"] == "open"
        }
        currency_code, total = check_items(
            [(i.invoice_id, i.amount_minor) for i in items], open_invoices
        )
        needs_approval = approval_required(total, await _thresholds(account_ids))
        [inserted] = await PaymentAttempt.insert(
            PaymentAttempt(
                organization=organization_root_id,
                currency=currency_code,
                amount_minor=total,
                kind=kind,
                status="pending_approval" if needs_approval else "ready",
                created_by_user=user_id,
                approval_required=needs_approval,
                stripe_customer=stripe_customer,
                stripe_payment_method=payment_method,
                off_session=off_session,
                created_at=now,
                updated_at=now,
            )
        )
        attempt_id = int(inserted["id"])
        await PaymentAttemptItem.insert(
            *[
                PaymentAttemptItem(
                    attempt=attempt_id,
                    invoice=i.invoice_id,
                    billing_account=by_id[i.invoice_id]["billing_account"],
                    amount_minor=i.amount_minor,
                )
                for i in items
            ]
        )
        if idempotency_record is not None:
            await idem.attach(idempotency_record, attempt_id)
        await record(
            AuditRecord(
                actor,
                "payment_attempt.created",
                "payment_attempt",
                attempt_id,
                data={
                    "kind": kind,
                    "amount": total,
                    "currency": currency_code,
                    "approval_required": needs_approval,
                    "invoices": {str(i.invoice_id): i.amount_minor for i in items},
                },
            )
        )
    return await get_attempt(attempt_id)


# ---------------------------------------------------------------------------- approval


async def _decide(
    attempt_id: int, approver_user_id: int, scope: Scope, actor: Actor, approve: bool, reason: str
) -> Attempt:
    if not 0 < attempt_id <= 2**31 - 1:
        raise NotFound("payment attempt")
    now = datetime.now(UTC)
    async with transaction():
        row = await for_update(
            PaymentAttempt.select().where(PaymentAttempt.id == attempt_id)
        ).first()
        items = await attempt_items(attempt_id)
        if row is None or not items:
            raise NotFound("payment attempt")
        accounts = {i["billing_account"] for i in items}
        if not accounts <= scope.billing_account_ids:
            raise NotFound("payment attempt")
        if not all(scope.may(CustomerRole.APPROVER, a) for a in accounts):
            raise NotPermitted("Only an approver of every account in this payment can decide it.")
        if row["created_by_user"] == approver_user_id:
            raise NotPermitted("You cannot approve or reject a payment you submitted yourself.")
        if row["status"] != "pending_approval":
            raise Conflict("This payment is no longer waiting for approval.")
        if approve:
            # The invoices may have been paid meanwhile: refuse rather than overpay.
            open_rows = await Invoice.select(Invoice.id, Invoice.balance_minor).where(
                Invoice.id.is_in([i["invoice"] for i in items]) & (Invoice.status == "open")
            )
            balances = {r["id"]: r["balance_minor"] for r in open_rows}
            if any(i["amount_minor"] > balances.get(i["invoice"], 0) for i in items):
                raise Conflict(
                    "The invoices of this payment changed since it was submitted (paid or "
                    "voided): reject it and submit a new one."
                )
        await PaymentAttempt.update(
            {
                PaymentAttempt.status: "ready" if approve else "rejected",
                PaymentAttempt.approved_by_user: approver_user_id if approve else None,
                PaymentAttempt.approved_at: now if approve else None,
                PaymentAttempt.failure_message: "" if approve else reason[:500],
                PaymentAttempt.updated_at: now,
            }
        ).where(PaymentAttempt.id == attempt_id)
        await record(
            AuditRecord(
                actor,
                "payment_attempt.approved" if approve else "payment_attempt.rejected",
                "payment_attempt",
                attempt_id,
                data={"amount": row["amount_minor"], "currency": row["currency"]}
                | ({} if approve else {"reason": reason[:500]}),
            )
        )
    return await get_attempt(attempt_id)


async def approve_attempt(
    attempt_id: int, *, approver_user_id: int, scope: Scope, actor: Actor
) -> Attempt:
    """An approver (of every account of the attempt, not its creator) approves it. A
    saved-method attempt is then charged off-session at once; a Checkout attempt lets
    its payer continue to Stripe."""
    attempt = await _decide(attempt_id, approver_user_id, scope, actor, True, "")
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is not None and row["kind"] != "checkout" and row["stripe_payment_method"]:
        await charge_saved_method(
            attempt_id,
            stripe_customer=row["stripe_customer"],
            payment_method=row["stripe_payment_method"],
            actor=actor,
            off_session=True,
        )
        attempt = await get_attempt(attempt_id)
    return attempt


async def reject_attempt(
    attempt_id: int, *, approver_user_id: int, scope: Scope, actor: Actor, reason: str = ""
) -> Attempt:
    return await _decide(attempt_id, approver_user_id, scope, actor, False, reason)


async def pending_approvals(scope: Scope) -> list[dict[str, Any]]:
    """Attempts waiting for approval that this user may decide (approver of every
    account, not the creator), oldest first, with their items."""
    approvable = {a for a in scope.billing_account_ids if scope.may(CustomerRole.APPROVER, a)}
    if not approvable:
        return []
    rows = await (
        PaymentAttempt.select(
            *PaymentAttempt.all_columns(),
            PaymentAttempt.created_by_user.name.as_alias("creator_name"),
        )
        .where(PaymentAttempt.status == "pending_approval")
        .order_by(PaymentAttempt.id)
    )
    result = []
    for row in rows:
        items = await attempt_items(row["id"])
        accounts = {i["billing_account"] for i in items}
        if not items or not accounts <= approvable:
            continue
        result.append({**row, "items": items, "own": row["created_by_user"] == scope.user_id})
    return result


# ----------------------------------------------------------------------------- charge


async def _begin_call(attempt_id: int, allowed: tuple[str, ...], fields: dict[Any, Any]) -> int:
    """Mark the attempt ``unknown`` (committed before calling Stripe) and return the try
    number the idempotency key uses. A retry of an ``unknown`` attempt reuses its try
    number (same key: Stripe replays); other allowed states start a new try."""
    async with transaction():
        row = await for_update(
            PaymentAttempt.select().where(PaymentAttempt.id == attempt_id)
        ).first()
        if row is None:
            raise NotFound("payment attempt")
        if row["status"] not in allowed and row["status"] != "unknown":
            raise Conflict(f"This payment cannot be sent to Stripe now ({row['status']}).")
        tries = row["tries"] if row["status"] == "unknown" else row["tries"] + 1
        await PaymentAttempt.update(
            {
                PaymentAttempt.status: "unknown",
                PaymentAttempt.tries: tries,
                PaymentAttempt.updated_at: datetime.now(UTC),
                **fields,
            }
        ).where(PaymentAttempt.id == attempt_id)
    faults.hit("before_stripe")
    return int(tries)


def _metadata(attempt_id: int) -> dict[str, str]:
    return {METADATA_KEY: str(attempt_id)}


def _charge_params(row: dict[str, Any]) -> dict[str, Any]:
    """Derived only from the stored attempt, so a repeat is byte-identical for Stripe."""
    params: dict[str, Any] = {
        "amount": row["amount_minor"],
        "currency": row["currency"].lower(),
        "customer": row["stripe_customer"],
        "payment_method": row["stripe_payment_method"],
        "payment_method_types": ["card"],
        "confirm": True,
        "off_session": bool(row["off_session"]),
        "metadata": _metadata(row["id"]),
        "description": f"Ledgerline payment {row['id']}",
    }
    if not row["off_session"]:
        params["return_url"] = f"{gateway.config().base_url}/pay/attempts/{row['id']}"
    return params


async def charge_saved_method(
    attempt_id: int,
    *,
    stripe_customer: str,
    payment_method: str,
    actor: Actor,
    off_session: bool,
) -> str:
    """Charge a ``ready`` (or earlier ``failed``) attempt with a saved payment method:
    one PaymentIntent created and confirmed with ``attempt-{id}-charge-{try}``. Returns
    the attempt's status afterwards: succeeded, processing, requires_action, failed, or
    unknown (Stripe unreachable: the reconciliation job will find out)."""
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is None:
        raise NotFound("payment attempt")
    if row["status"] == "succeeded":  # settled: book its Stripe fee if that failed before
        await book_stripe_fee_quietly(row["stripe_payment_intent"], actor)
    if row["status"] in ("succeeded", "rejected", "canceled", "pending_approval"):
        return str(row["status"])
    if row["status"] in ("processing", "requires_action"):
        return await settle_attempt(attempt_id, actor)
    if not stripe_customer or not payment_method:
        raise ValidationFailed({"payment_method": "Choose a saved payment method."})
    tries = await _begin_call(
        attempt_id,
        ("ready", "failed"),
        {
            PaymentAttempt.stripe_customer: stripe_customer,
            PaymentAttempt.stripe_payment_method: payment_method,
            PaymentAttempt.off_session: off_session,
            PaymentAttempt.stripe_payment_intent: "",
            PaymentAttempt.failure_code: "",
            PaymentAttempt.failure_message: "",
        },
    )
    return await _send_charge(attempt_id, tries, actor)


async def authentication_url(attempt_id: int) -> str | None:
    """Where the customer confirms a payment their bank wants authenticated (3-D Secure):
    the PaymentIntent's ``next_action`` redirect, read from Stripe. None when the attempt
    needs no action (or Stripe names no page)."""
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is None:
        raise NotFound("payment attempt")
    if row["status"] != "requires_action" or not row["stripe_payment_intent"]:
        return None
    client = gateway.stripe_client()
    intent = gateway.as_dict(
        await gateway.call(client.v1.payment_intents.retrieve, row["stripe_payment_intent"])
    )
    action = intent.get("next_action") or {}
    url = str((action.get("redirect_to_url") or {}).get("url") or "")
    if action.get("type") != "redirect_to_url" or not url.startswith(("https://", "http://")):
        return None
    return url


async def _send_charge(attempt_id: int, tries: int, actor: Actor) -> str:
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    assert row is not None
    client = gateway.stripe_client()
    key = gateway.idempotency_key(attempt_id, f"charge-{tries}")
    try:
        intent = await gateway.call(
            client.v1.payment_intents.create,
            params=_charge_params(row),
            options={"idempotency_key": key},
        )
        outcome = gateway.as_dict(intent)
    except stripe.CardError as exc:
        error = exc.error
        pi = getattr(error, "payment_intent", None) if error is not None else None
        outcome = gateway.as_dict(pi) if pi is not None else {}
        outcome.setdefault("status", "requires_payment_method")
        outcome["_error_code"] = (getattr(error, "code", None) or "card_declined") if error else ""
        outcome["_error_message"] = str(getattr(error, "message", "") or exc.user_message or "")
    except stripe.StripeError as exc:
        log.warning("stripe charge outcome unknown", attempt_id=attempt_id, error=repr(exc))
        return "unknown"
    faults.hit("after_stripe")
    return await _record_intent(attempt_id, outcome, actor)


_PI_STATUS = {
    "succeeded": "succeeded",
    "processing": "processing",
    "requires_action": "requires_action",
    "requires_confirmation": "requires_action",
    "requires_capture": "processing",
    "requires_payment_method": "failed",
    "canceled": "failed",
}


async def _record_intent(attempt_id: int, intent: dict[str, Any], actor: Actor) -> str:
    """Record what Stripe says about the attempt's PaymentIntent; settle it when it
    succeeded. Under the attempt's row lock: the webhook and the return page may race."""
    async with transaction():
        row = await for_update(
            PaymentAttempt.select().where(PaymentAttempt.id == attempt_id)
        ).first()
        if row is None:
            raise NotFound("payment attempt")
        if row["status"] in ("succeeded", "rejected", "canceled"):
            return str(row["status"])
        pi_id = intent.get("id") or row["stripe_payment_intent"]
        if row["status"] == "failed" and pi_id != row["stripe_payment_intent"]:
            return "failed"  # an older try's news; a new try has its own intent
        status = _PI_STATUS.get(str(intent.get("status")), "processing")
        now = datetime.now(UTC)
        if status == "succeeded":
            await _settle_locked(row, intent, actor)
        else:
            error = intent.get("last_payment_error") or {}
            await PaymentAttempt.update(
                {
                    PaymentAttempt.status: status,
                    PaymentAttempt.stripe_payment_intent: pi_id or "",
                    PaymentAttempt.failure_code: (
                        intent.get("_error_code")
                        or error.get("decline_code")
                        or error.get("code")
                        or ""
                    )[:64]
                    if status == "failed"
                    else "",
                    PaymentAttempt.failure_message: (
                        intent.get("_error_message") or error.get("message") or ""
                    )
                    if status == "failed"
                    else "",
                    PaymentAttempt.updated_at: now,
                }
            ).where(PaymentAttempt.id == attempt_id)
            if status != row["status"]:
                await record(
                    AuditRecord(
                        actor,
                        f"payment_attempt.{status}",
                        "payment_attempt",
                        attempt_id,
                        data={"payment_intent": pi_id or ""},
                    )
                )
        faults.hit("before_commit")
    faults.hit("after_commit")
    if status == "succeeded" and pi_id:
        await book_stripe_fee_quietly(str(pi_id), actor)
    return status


async def _settle_locked(row: dict[str, Any], intent: dict[str, Any], actor: Actor) -> None:
    """Inside the caller's transaction, with the attempt row locked: one payment per
    billing account, allocations capped at the invoices' current open balances."""
    if int(intent.get("amount_received") or intent.get("amount") or 0) != row["amount_minor"] or (
        str(intent.get("currency", "")).upper() != row["currency"]
    ):
        raise RuntimeError(
            f"PaymentIntent {intent.get('id')} does not match attempt {row['id']} (amount or "
            "currency): refusing to settle"
        )
    items = await PaymentAttemptItem.select().where(PaymentAttemptItem.attempt == row["id"])
    by_account: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for item in sorted(items, key=lambda i: i["id"]):
        by_account[item["billing_account"]].append((item["invoice"], item["amount_minor"]))
    pi_id = str(intent["id"])
    for account_id, account_items in sorted(by_account.items()):
        open_rows = await Invoice.select(Invoice.id, Invoice.balance_minor).where(
            Invoice.id.is_in([i for i, _ in account_items])
            & (Invoice.status == "open")
            & (Invoice.billing_account == account_id)
            & (Invoice.currency == row["currency"])
        )
        allocations, _ = settlement_split(
            account_items, {r["id"]: r["balance_minor"] for r in open_rows}
        )
        await record_payment(
            billing_account_id=account_id,
            amount_minor=sum(a for _, a in account_items),
            currency_code=row["currency"],
            method="card",
            reference=pi_id,
            allocations=[AllocationRequest(i, a) for i, a in allocations],
            actor=actor,
            cash_account=acct.STRIPE_BALANCE,
            attempt_id=row["id"],
            stripe_payment_intent=pi_id,
        )
    now = datetime.now(UTC)
    await PaymentAttempt.update(
        {
            PaymentAttempt.status: "succeeded",
            PaymentAttempt.stripe_payment_intent: pi_id,
            PaymentAttempt.failure_code: "",
            PaymentAttempt.failure_message: "",
            PaymentAttempt.settled_at: now,
            PaymentAttempt.updated_at: now,
        }
    ).where(PaymentAttempt.id == row["id"])
    await record(
        AuditRecord(
            actor,
            "payment_attempt.succeeded",
            "payment_attempt",
            row["id"],
            data={"payment_intent": pi_id, "amount": row["amount_minor"]},
        )
    )


# --------------------------------------------------------------------------- checkout


def _checkout_params(row: dict[str, Any], numbers: list[str]) -> dict[str, Any]:
    base = gateway.config().base_url
    name = "Invoice " + ", ".join(numbers) if len(numbers) <= 5 else f"{len(numbers)} invoices"
    return {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": row["currency"].lower(),
                    "unit_amount": row["amount_minor"],
                    "product_data": {"name": name[:250]},
                },
            }
        ],
        "success_url": f"{base}/pay/attempts/{row['id']}?checkout=success",
        "cancel_url": f"{base}/pay/attempts/{row['id']}?checkout=canceled",
        "client_reference_id": str(row["id"]),
        "metadata": _metadata(row["id"]),
        "payment_intent_data": {"metadata": _metadata(row["id"])},
    }


async def start_checkout(attempt_id: int, actor: Actor) -> str:
    """Open a Stripe Checkout session for a ``ready`` attempt (idempotency key
    ``attempt-{id}-checkout-{try}``) and return its hosted page URL. An attempt whose
    session is already open gets the same session's URL again."""
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is None:
        raise NotFound("payment attempt")
    client = gateway.stripe_client()
    if row["status"] == "processing" and row["stripe_checkout_session"]:
        session = await gateway.call(
            client.v1.checkout.sessions.retrieve, row["stripe_checkout_session"]
        )
        if session.status == "open" and session.url:
            return str(session.url)
        raise Conflict("This payment's checkout page is closed.")
    tries = await _begin_call(attempt_id, ("ready",), {PaymentAttempt.kind: "checkout"})
    return await _send_checkout(attempt_id, tries, actor)


async def _send_checkout(attempt_id: int, tries: int, actor: Actor) -> str:
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    assert row is not None
    numbers = [i["number"] or f"#{i['invoice']}" for i in await attempt_items(attempt_id)]
    client = gateway.stripe_client()
    try:
        session = await gateway.call(
            client.v1.checkout.sessions.create,
            params=_checkout_params(row, numbers),
            options={"idempotency_key": gateway.idempotency_key(attempt_id, f"checkout-{tries}")},
        )
    except stripe.StripeError as exc:
        log.warning("stripe checkout outcome unknown", attempt_id=attempt_id, error=repr(exc))
        raise Conflict("Stripe could not be reached. Please try again in a moment.") from exc
    faults.hit("after_stripe")
    async with transaction():
        await PaymentAttempt.update(
            {
                PaymentAttempt.status: "processing",
                PaymentAttempt.stripe_checkout_session: session.id,
                PaymentAttempt.updated_at: datetime.now(UTC),
            }
        ).where((PaymentAttempt.id == attempt_id) & (PaymentAttempt.status == "unknown"))
        await record(
            AuditRecord(
                actor,
                "payment_attempt.checkout_opened",
                "payment_attempt",
                attempt_id,
                data={"checkout_session": session.id},
            )
        )
        faults.hit("before_commit")
    faults.hit("after_commit")
    return str(session.url)


async def cancel_checkout(attempt_id: int, actor: Actor) -> str:
    """The payer came back from Checkout without paying: expire the session (unless it
    was paid meanwhile, then settle) so its amount no longer counts as in flight."""
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is None:
        raise NotFound("payment attempt")
    if row["status"] != "processing" or not row["stripe_checkout_session"]:
        return str(row["status"])
    client = gateway.stripe_client()
    session = await gateway.call(
        client.v1.checkout.sessions.retrieve, row["stripe_checkout_session"]
    )
    if session.status == "open":
        # Completed meanwhile: settle_attempt below finds out.
        with contextlib.suppress(stripe.InvalidRequestError):
            await gateway.call(
                client.v1.checkout.sessions.expire,
                row["stripe_checkout_session"],
                options={
                    "idempotency_key": gateway.idempotency_key(attempt_id, f"expire-{row['tries']}")
                },
            )
    return await settle_attempt(attempt_id, actor)


# ------------------------------------------------------------------------------ settle


async def settle_attempt(attempt_id: int, actor: Actor, payment_intent: str | None = None) -> str:
    """Re-read the attempt's PaymentIntent (or Checkout session) from Stripe and record
    the outcome; on success record the payments exactly once. ``payment_intent`` names
    the intent when the attempt has not recorded it yet (a webhook's news). Returns the
    attempt's status."""
    row = await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()
    if row is None:
        raise NotFound("payment attempt")
    if row["status"] == "succeeded":  # settled: book its Stripe fee if that failed before
        await book_stripe_fee_quietly(row["stripe_payment_intent"], actor)
    if row["status"] in ("succeeded", "rejected", "canceled", "pending_approval", "ready"):
        return str(row["status"])
    client = gateway.stripe_client()
    pi_id = row["stripe_payment_intent"] or payment_intent
    if row["status"] == "failed" and payment_intent and payment_intent != pi_id:
        pi_id = row["stripe_payment_intent"]
    if not pi_id and row["stripe_checkout_session"]:
        session = await gateway.call(
            client.v1.checkout.sessions.retrieve, row["stripe_checkout_session"]
        )
        if session.payment_intent:
            pi_id = (
                session.payment_intent
                if isinstance(session.payment_intent, str)
                else session.payment_intent.id
            )
        elif session.status == "expired":
            return await _finish(attempt_id, "canceled", actor, "The checkout page expired.")
        else:
            return str(row["status"])
    if not pi_id:
        return str(row["status"])
    intent = await gateway.call(client.v1.payment_intents.retrieve, pi_id)
    data = gateway.as_dict(intent)
    if str((data.get("metadata") or {}).get(METADATA_KEY, "")) != str(attempt_id):
        log.warning("payment intent of another attempt", attempt_id=attempt_id, pi=pi_id)
        return str(row["status"])
    return await _record_intent(attempt_id, data, actor)


async def _finish(attempt_id: int, status: str, actor: Actor, message: str) -> str:
    async with transaction():
        row = await for_update(
            PaymentAttempt.select().where(PaymentAttempt.id == attempt_id)
        ).first()
        if row is None or row["status"] in FINAL:
            return str(row["status"]) if row else status
        await PaymentAttempt.update(
            {
                PaymentAttempt.status: status,
                PaymentAttempt.failure_message: message,
                PaymentAttempt.updated_at: datetime.now(UTC),
            }
        ).where(PaymentAttempt.id == attempt_id)
        await record(AuditRecord(actor, f"payment_attempt.{status}", "payment_attempt", attempt_id))
    return status


# --------------------------------------------------------------------------- reconcile


@dataclass
class ReconcileReport:
    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    still_open: int = 0


async def reconcile(
    *,
    now: datetime | None = None,
    unknown_after: timedelta = timedelta(minutes=1),
    processing_after: timedelta = timedelta(minutes=10),
    ready_expires_after: timedelta = timedelta(hours=24),
    limit: int = 200,
) -> ReconcileReport:
    """Find out what happened to attempts whose outcome we do not know, by asking Stripe.

    * ``unknown`` for longer than ``unknown_after``: the Stripe call is repeated with the
      SAME idempotency key (Stripe returns the object it made, or makes it if the first
      call never arrived), then the outcome is recorded and settled.
    * ``processing`` / ``requires_action`` for longer than ``processing_after``: the
      PaymentIntent or Checkout session is re-read and settled, failed or canceled.
    * ``ready`` (never sent to Stripe) for longer than ``ready_expires_after``: canceled,
      so the amount no longer counts as in flight.
    """
    now = now or datetime.now(UTC)
    actor = Actor.system("payments.reconcile")
    report = ReconcileReport()
    rows = await (
        PaymentAttempt.select()
        .where(
            (
                (PaymentAttempt.status == "unknown")
                & (PaymentAttempt.updated_at <= now - unknown_after)
            )
            | (
                PaymentAttempt.status.is_in(["processing", "requires_action"])
                & (PaymentAttempt.updated_at <= now - processing_after)
            )
            | (
                (PaymentAttempt.status == "ready")
                & (PaymentAttempt.updated_at <= now - ready_expires_after)
            )
        )
        .order_by(PaymentAttempt.id)
        .limit(limit)
    )
    for row in rows:
        report.checked += 1
        try:
            if row["status"] == "ready":
                status = await _finish(row["id"], "canceled", actor, "Not paid within 24 hours.")
            elif row["status"] == "unknown" and not row["stripe_payment_intent"]:
                if row["kind"] == "checkout":
                    await _send_checkout(row["id"], row["tries"], actor)
                    status = "processing"
                else:
                    status = await _send_charge(row["id"], row["tries"], actor)
            else:
                status = await settle_attempt(row["id"], actor)
        except (stripe.StripeError, DomainError) as exc:
            log.warning("reconcile failed", attempt_id=row["id"], error=repr(exc))
            report.still_open += 1
            continue
        if status == "succeeded":
            report.succeeded += 1
        elif status == "failed":
            report.failed += 1
        elif status == "canceled":
            report.canceled += 1
        else:
            report.still_open += 1
    return report
