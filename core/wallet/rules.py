"""Pure rules of the wallet: who may manage saved methods, the autopay retry schedule,
which invoices an autopay run charges, and the mandate text. Plain values in, plain
values out (no database, no Stripe), so they are tested with Hypothesis properties."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from core.identity.roles import CustomerRole, at_least

# Days after a failed autopay try before the next one: try 1 fails → try 2 a day later,
# then 3 days, then 7 days; a failed 4th try is the last (the customer pays by hand).
RETRY_DELAYS_DAYS: tuple[int, ...] = (1, 3, 7)
MAX_TRIES = len(RETRY_DELAYS_DAYS) + 1

# Stripe refuses charges below about 0.50 in the major unit; smaller autopay totals are
# left for the customer to pay by hand (checked per currency's minor units).
MIN_CHARGE_MINOR = 50

MANDATE_VERSION = "2026-11"
MANDATE_TEMPLATE = (
    "I authorise {seller} to charge my {method} for every invoice of billing account "
    "{account} on or after its due date, for the invoice's open balance in {currency}, "
    "until I turn autopay off. If a charge fails, it is retried up to {retries} times "
    "over the following {retry_days} days and I am told by email. I can turn autopay off "
    "at any time on the Autopay page; charges already started are not affected."
)


def mandate_text(*, seller: str, method: str, account: str, currency: str) -> str:
    """The exact text shown next to the consent checkbox and stored with the enrollment."""
    return MANDATE_TEMPLATE.format(
        seller=seller,
        method=method,
        account=account,
        currency=currency,
        retries=len(RETRY_DELAYS_DAYS),
        retry_days=sum(RETRY_DELAYS_DAYS),
    )


def method_label(brand: str, last4: str) -> str:
    name = (brand or "card").replace("_", " ").title()
    return f"{name} ending {last4}" if last4 else name


def may_manage_methods(roles: Iterable[CustomerRole | None]) -> bool:
    """Saved methods belong to the customer group: anyone who may pay somewhere in it
    (payer or above on some node) may add, remove and choose the default; viewers may
    only look."""
    return any(at_least(r, CustomerRole.PAYER) for r in roles)


def next_try_at(try_number: int, failed_at: datetime) -> datetime | None:
    """When the next try may start after try ``try_number`` (1-based) failed at
    ``failed_at``; None when that was the last try."""
    if try_number < 1:
        raise ValueError("try_number starts at 1")
    if try_number > len(RETRY_DELAYS_DAYS):
        return None
    return failed_at + timedelta(days=RETRY_DELAYS_DAYS[try_number - 1])


@dataclass(frozen=True, slots=True)
class DueInvoice:
    invoice_id: int
    billing_account_id: int
    currency: str
    due_date: date
    balance_minor: int


@dataclass(frozen=True, slots=True)
class PastTry:
    """The latest autopay try (under the current enrollment) that included an invoice."""

    try_number: int
    outcome: str  # pending, succeeded, failed, requires_action, canceled
    next_try_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChargePlan:
    billing_account_id: int
    currency: str
    invoice_ids: tuple[int, ...]
    amount_minor: int
    try_number: int


def plan_charges(
    invoices: Iterable[DueInvoice],
    *,
    today: date,
    now: datetime,
    live_invoice_ids: frozenset[int],
    past_tries: Mapping[int, PastTry],
) -> list[ChargePlan]:
    """One charge per (billing account, currency) for the open invoices due on or before
    ``today`` that are in no live attempt and not waiting for (or past) their retries.

    An invoice whose last try failed is charged again once its ``next_try_at`` has come,
    as try n+1; one whose last try failed with no next try is left alone (autopay gave
    up); the plan's try number is the highest among its invoices. A total below
    ``MIN_CHARGE_MINOR`` is not charged (Stripe would refuse it).
    """
    groups: dict[tuple[int, str], list[tuple[DueInvoice, int]]] = {}
    for inv in invoices:
        if inv.balance_minor <= 0 or inv.due_date > today or inv.invoice_id in live_invoice_ids:
            continue
        past = past_tries.get(inv.invoice_id)
        try_number = 1
        if past is not None:
            if past.outcome in ("pending", "requires_action"):
                continue  # still being decided (or waiting for the customer)
            if past.outcome == "failed":
                if past.next_try_at is None or past.next_try_at > now:
                    continue
                try_number = past.try_number + 1
        groups.setdefault((inv.billing_account_id, inv.currency), []).append((inv, try_number))
    plans = []
    for (account, currency), members in sorted(groups.items()):
        members.sort(key=lambda m: (m[0].due_date, m[0].invoice_id))
        if sum(m[0].balance_minor for m in members) < MIN_CHARGE_MINOR:
            continue
        plans.append(
            ChargePlan(
                billing_account_id=account,
                currency=currency,
                invoice_ids=tuple(m[0].invoice_id for m in members),
                amount_minor=sum(m[0].balance_minor for m in members),
                try_number=max(t for _, t in members),
            )
        )
    return plans
