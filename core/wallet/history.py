"""Read side of payments for customers: the payment history (filters, paging, export)
and the receipt of one payment. Every query goes through a ``Scope``: a billing account
or payment outside it is ``NotFound``, indistinguishable from a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from piccolo.columns.combination import Where

from core.errors import NotFound
from core.identity.scope import Scope
from core.identity.tables import BillingAccount
from core.invoicing.queries import InvoicePage
from core.payments.tables import Allocation, Payment
from core.wallet.rules import method_label
from core.wallet.tables import SavedPaymentMethod

METHOD_FILTERS: dict[str, str] = {
    "card": "Card",
    "sepa_debit": "SEPA Direct Debit",
    "us_bank_account": "US bank account",
    "bank_transfer": "Bank transfer",
    "check": "Check",
    "manual": "Other",
}
STATUS_FILTERS: dict[str, str] = {
    "succeeded": "Succeeded",
    "pending": "Pending",
    "refunded": "Refunded",
    "partially_refunded": "Partially refunded",
    "disputed": "Disputed",
    "reversed": "Reversed",
    "failed": "Failed",
}
PER_PAGE_CHOICES = (10, 25, 50, 100)
EXPORT_LIMIT = 50_000
MAX_ID = 2**31 - 1  # ids are PostgreSQL serial (int4) columns


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    received_from: date | None = None
    received_to: date | None = None
    billing_account_id: int | None = None
    method: str | None = None  # one of METHOD_FILTERS
    status: str | None = None  # one of STATUS_FILTERS
    page: int = 1
    per_page: int = 25


# A page of rows: the invoice list's page type serves the payment history as well.
PaymentPage = InvoicePage


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _where(scope: Scope, f: PaymentFilter) -> Where | Any:
    accounts = set(scope.billing_account_ids)
    if f.billing_account_id is not None:
        if f.billing_account_id not in accounts:
            raise NotFound("billing account")
        accounts = {f.billing_account_id}
    where = Payment.billing_account.is_in(sorted(accounts) or [-1])
    if f.received_from:
        where &= Payment.received_at >= _start_of(f.received_from)
    if f.received_to:
        where &= Payment.received_at < _start_of(f.received_to + timedelta(days=1))
    if f.method:
        where &= Payment.method == f.method
    if f.status:
        where &= Payment.status == f.status
    return where


COLUMNS = (
    Payment.id,
    Payment.received_at,
    Payment.currency,
    Payment.amount_minor,
    Payment.unapplied_minor,
    Payment.method,
    Payment.status,
    Payment.reference,
    Payment.stripe_payment_intent,
    Payment.billing_account.id.as_alias("account_id"),
    Payment.billing_account.name.as_alias("account_name"),
    Payment.billing_account.code.as_alias("account_code"),
    Payment.billing_account.organization.name.as_alias("organization_name"),
    Payment.attempt.stripe_payment_method.as_alias("stripe_payment_method"),
    Payment.attempt.kind.as_alias("attempt_kind"),
)


def receipt_number(payment_id: int) -> str:
    return f"R-{payment_id:07d}"


async def _method_details(rows: list[dict[str, Any]]) -> None:
    """Add ``method_label`` (e.g. "Visa ending 4242" for a saved card) to each row."""
    pms = sorted({r["stripe_payment_method"] for r in rows if r.get("stripe_payment_method")})
    saved = {}
    if pms:
        saved = {
            s["stripe_payment_method"]: s
            for s in await SavedPaymentMethod.select(
                SavedPaymentMethod.stripe_payment_method,
                SavedPaymentMethod.brand,
                SavedPaymentMethod.last4,
            ).where(SavedPaymentMethod.stripe_payment_method.is_in(pms))
        }
    for r in rows:
        s = saved.get(r.get("stripe_payment_method") or "")
        if s is not None:
            r["method_label"] = method_label(s["brand"], s["last4"])
        else:
            r["method_label"] = METHOD_FILTERS.get(r["method"], r["method"].replace("_", " "))
        r["receipt_number"] = receipt_number(r["id"])
        r["autopay"] = r.get("attempt_kind") == "autopay"


async def list_payments(scope: Scope, f: PaymentFilter) -> PaymentPage:
    where = _where(scope, f)
    total = await Payment.count().where(where)
    page = min(f.page, max(1, -(-total // f.per_page)))  # past the end: the last page
    rows = (
        await Payment.select(*COLUMNS)
        .where(where)
        .order_by(Payment.received_at, ascending=False)
        .order_by(Payment.id, ascending=False)
        .limit(f.per_page)
        .offset((page - 1) * f.per_page)
    )
    await _method_details(rows)
    return PaymentPage(rows=rows, total=total, page=page, per_page=f.per_page)


async def export_rows(scope: Scope, f: PaymentFilter) -> list[dict[str, Any]]:
    rows = (
        await Payment.select(*COLUMNS)
        .where(_where(scope, f))
        .order_by(Payment.received_at, ascending=False)
        .order_by(Payment.id, ascending=False)
        .limit(EXPORT_LIMIT)
    )
    await _method_details(rows)
    return rows


async def account_options(scope: Scope) -> list[dict[str, Any]]:
    return (
        await BillingAccount.select(
            BillingAccount.id, BillingAccount.name, BillingAccount.code, BillingAccount.currency
        )
        .where(BillingAccount.id.is_in(sorted(scope.billing_account_ids) or [-1]))
        .order_by(BillingAccount.name)
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    payment_id: int
    number: str
    received_at: datetime
    currency: str
    amount_minor: int
    unapplied_minor: int
    method: str
    method_label: str
    status: str
    reference: str
    account_name: str
    account_code: str
    organization_name: str
    autopay: bool
    invoices: list[dict[str, Any]]  # number, id, amount_minor
    attempt_id: int | None = None
    created_by_user: int | None = None
    bill_to_email: str = ""


async def load_receipt(payment_id: int) -> Receipt:
    """The receipt of a payment, unscoped (for the receipt email job)."""
    row = (
        await Payment.select(
            *COLUMNS,
            Payment.attempt.id.as_alias("attempt_id"),
            Payment.attempt.created_by_user.as_alias("created_by_user"),
            Payment.billing_account.bill_to_email.as_alias("bill_to_email"),
        )
        .where(Payment.id == payment_id)
        .first()
    )
    if row is None:
        raise NotFound("payment")
    await _method_details([row])
    allocations = (
        await Allocation.select(
            Allocation.invoice.id.as_alias("id"),
            Allocation.invoice.number.as_alias("number"),
            Allocation.amount_minor,
        )
        .where(Allocation.payment == payment_id)
        .order_by(Allocation.id)
    )
    return Receipt(
        payment_id=row["id"],
        number=row["receipt_number"],
        received_at=row["received_at"],
        currency=row["currency"],
        amount_minor=row["amount_minor"],
        unapplied_minor=row["unapplied_minor"],
        method=row["method"],
        method_label=row["method_label"],
        status=row["status"],
        reference=row["reference"] or row["stripe_payment_intent"] or "",
        account_name=row["account_name"],
        account_code=row["account_code"],
        organization_name=row["organization_name"],
        autopay=row["autopay"],
        invoices=allocations,
        attempt_id=row["attempt_id"],
        created_by_user=row["created_by_user"],
        bill_to_email=row["bill_to_email"] or "",
    )


async def get_receipt(scope: Scope, payment_id: int) -> Receipt:
    """The receipt of a payment of an account in ``scope``; anything else is NotFound."""
    if not 0 < payment_id <= MAX_ID:
        raise NotFound("payment")
    row = await Payment.select(Payment.billing_account).where(Payment.id == payment_id).first()
    if row is None or row["billing_account"] not in scope.billing_account_ids:
        raise NotFound("payment")
    return await load_receipt(payment_id)
