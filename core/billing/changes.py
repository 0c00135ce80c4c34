"""Subscription changes as pure rules: what a change would bill, before anyone confirms it.

``preview_*`` functions take plain values (the subscription as it is, the change asked for,
the instant ``at``) and return a ``ChangePreview``: the proration lines (signed, rounded
once each by ``core.billing.proration``), their net, and the subscription's period and
anchor after the change. The services record exactly these lines as pending charges, so
what the customer saw is what the next invoice bills.

Rules (see docs/subscriptions.md)
------------------------------------------
The invoice run bills a subscription's whole period, once, at the price in force when it
bills it: a price billed in advance as soon as its period has started, one billed in
arrears (and metered usage) when its period has ended. So what a change must add depends
on one fact, ``SubscriptionState.billed``: has the current period been invoiced already?

* **Period already billed** (advance, the usual case): a change at ``at`` credits the
  unused part of the old charge ``[at, period.end)`` and charges the new one for the same
  remainder (``proration.change_within_period``). Cancel now = the credit alone.
* **Period not billed yet** (arrears, or advance before the run reached it): the run will
  bill the whole period at the new price, so the change charges the old price for the part
  already used ``[period.start, at)`` and credits the new price for that same part. The
  period ends up billed at the old price before the change and the new one after. Cancel
  now (the run bills a canceled subscription nothing more) = the used part alone.
* **Interval changes** (e.g. annual -> monthly): a new cycle starts on the local date of
  the change (``proration.change_interval``). The old period is settled as above (credit
  its unused part if billed, else charge its used part); the new cycle's first period is
  a new period the run bills in full, so the part of it before ``at`` is credited.
* **Trials**: nothing is billed for a trial, so changes and cancellations during a trial
  produce no lines.
* **(Re)starts** (create with an anchor not on the start date, reactivating a canceled
  subscription): the run bills the period containing the start in full, so the part
  before the start ``[period.start, at)`` is credited.
* Every line is rounded once (the price's rounding mode, half-even by default); lines of
  zero amount (e.g. a metered price, whose recurring charge is 0) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.billing.periods import BillingAnchor, Interval, Period, period_containing
from core.billing.proration import (
    LineItem,
    RecurringCharge,
    change_interval,
    charge_remaining,
    credit_unused,
    prorate,
)
from core.catalog import pricing
from core.money import CurrencyMismatchError, Money

__all__ = [
    "ChangePreview",
    "Plan",
    "PreviewLine",
    "SubscriptionState",
    "plan_charge",
    "preview_cancel",
    "preview_change",
    "preview_start",
]

STATUSES = ("trialing", "active", "past_due", "canceled")


@dataclass(frozen=True, slots=True)
class Plan:
    """A price at a quantity: what one full period costs, and its interval."""

    price_id: int
    quantity: Decimal
    charge: RecurringCharge
    interval: Interval


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    status: str
    plan: Plan
    period: Period
    anchor: BillingAnchor
    timezone: str
    cancel_at_period_end: bool = False
    billed: bool = True  # the run has invoiced the current period already

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown subscription status {self.status!r}")


@dataclass(frozen=True, slots=True)
class PreviewLine:
    """A proration line: ``kind`` is proration_credit (amount < 0) or proration_charge."""

    kind: str
    description: str
    amount: Money
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class ChangePreview:
    kind: str
    at: datetime
    currency: str
    lines: tuple[PreviewLine, ...] = ()
    period: Period | None = None  # the subscription's current period after the change
    anchor: BillingAnchor | None = None  # its anchor after the change
    notes: tuple[str, ...] = field(default=())

    @property
    def net(self) -> Money:
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + line.amount
        return total

    @property
    def credit(self) -> Money:
        total = Money.zero(self.currency)
        for line in self.lines:
            if line.amount.is_negative():
                total = total + line.amount
        return total

    @property
    def charge(self) -> Money:
        return self.net - self.credit


def plan_charge(
    description: str,
    definition: pricing.PriceDefinition,
    quantity: Decimal | int,
    *,
    discount: pricing.Discount | None = None,
    metered: bool = False,
) -> RecurringCharge:
    """One full period of ``definition`` at ``quantity`` (rounded once), less a percentage
    ``discount`` in force; a metered price's recurring charge is zero (usage is billed on
    what was used, never prorated)."""
    if metered:
        return RecurringCharge(description, Money.zero(definition.currency), definition.rounding)
    amount = pricing.price(definition, quantity)
    if discount is not None and discount.percent_off is not None:
        amount = pricing.apply_discount(amount, discount)
    return RecurringCharge(description, amount, definition.rounding)


def _line(item: LineItem, description: str) -> PreviewLine:
    kind = "proration_credit" if item.amount.is_negative() else "proration_charge"
    return PreviewLine(kind, description, item.amount, item.period_start, item.period_end)


def _keep(lines: list[PreviewLine]) -> tuple[PreviewLine, ...]:
    return tuple(line for line in lines if not line.amount.is_zero())


def _negate(item: LineItem) -> LineItem:
    return LineItem(
        item.description, -item.amount, item.period_start, item.period_end, item.fraction
    )


def _check_at(state: SubscriptionState, at: datetime) -> None:
    if not state.period.start <= at <= state.period.end:
        raise ValueError(
            f"a change at {at.isoformat()} is outside the current period "
            f"{state.period.start.isoformat()} .. {state.period.end.isoformat()}"
        )


def preview_change(state: SubscriptionState, new: Plan, at: datetime) -> ChangePreview:
    """Change price and/or quantity at ``at`` (upgrade, downgrade, interval change)."""
    if state.status == "canceled":
        raise ValueError("a canceled subscription cannot be changed; reactivate it first")
    old = state.plan
    if old.charge.amount.currency != new.charge.amount.currency:
        raise CurrencyMismatchError("the new price must be in the subscription's currency")
    _check_at(state, at)
    code = old.charge.amount.currency.code
    kind = "change_price" if new.price_id != old.price_id else "change_quantity"
    same_interval = new.interval == old.interval
    if state.status == "trialing":  # nothing billed during a trial
        return ChangePreview(
            kind, at, code, (), state.period, state.anchor, ("No charge during the trial.",)
        )
    o, n = old.charge.description, new.charge.description
    notes: tuple[str, ...] = ()
    if same_interval:
        period, anchor = state.period, state.anchor
        if state.billed:
            lines = [
                _line(credit_unused(old.charge, period, at), f"Unused time on {o}"),
                _line(charge_remaining(new.charge, period, at), f"Remaining time on {n}"),
            ]
        else:
            used_old = prorate(old.charge, period, period.start, at)
            used_new = _negate(prorate(new.charge, period, period.start, at))
            lines = [
                _line(used_old, f"Used time on {o}"),
                _line(used_new, f"{n}: time before the change (billed on the old plan)"),
            ]
            full = new.charge.amount.round(new.charge.rounding)
            notes = (
                "This period is not invoiced yet: the next invoice bills it in full at the "
                f"new plan ({full.amount} {code}) together with these lines.",
            )
    else:
        change = change_interval(
            old.charge, state.period, new.charge, new.interval, at, state.timezone
        )
        period, anchor = change.period, change.anchor
        if state.billed:
            settle = _line(change.credit, f"Unused time on {o}")
        else:
            settle = _line(
                prorate(old.charge, state.period, state.period.start, at), f"Used time on {o}"
            )
        before_new = _negate(prorate(new.charge, period, period.start, at))
        lines = [settle, _line(before_new, f"{n}: time before the change")]
        full = new.charge.amount.round(new.charge.rounding)
        notes = (
            f"A new {new.interval.name}ly cycle starts; its first period is billed in full "
            f"on the next invoice ({full.amount} {code}), less the time before the change.",
        )
    return ChangePreview(kind, at, code, _keep(lines), period, anchor, notes)


def preview_cancel(state: SubscriptionState, at: datetime, *, at_period_end: bool) -> ChangePreview:
    """Cancel now (credit the unused part; in arrears: charge the used part) or at the
    period end (nothing billed now; the run bills no further period)."""
    if state.status == "canceled":
        raise ValueError("the subscription is already canceled")
    code = state.plan.charge.amount.currency.code
    if at_period_end:
        return ChangePreview(
            "cancel_at_period_end", at, code, (), state.period, state.anchor,
            ("The subscription ends when the current period ends.",),
        )  # fmt: skip
    _check_at(state, at)
    if state.status == "trialing":
        return ChangePreview("cancel_now", at, code, (), state.period, state.anchor)
    desc = state.plan.charge.description
    if not state.billed:
        item = prorate(state.plan.charge, state.period, state.period.start, at)
        lines = [_line(item, f"Used time on {desc}")]
    else:
        lines = [
            _line(credit_unused(state.plan.charge, state.period, at), f"Unused time on {desc}")
        ]
    return ChangePreview("cancel_now", at, code, _keep(lines), state.period, state.anchor)


def preview_start(
    plan: Plan,
    anchor: BillingAnchor,
    tz: str,
    at: datetime,
    *,
    kind: str = "create",
    billed: bool = False,
) -> ChangePreview:
    """Start (or restart) billing at ``at`` in the period containing it. Not invoiced yet
    (``billed=False``, the usual case): the run bills that period in full, so the part of
    it before ``at`` is credited. Already invoiced (a subscription canceled and restarted
    within one invoiced period): the rest of the period ``[at, end)`` is charged."""
    period = period_containing(at, anchor, plan.interval, tz)
    code = plan.charge.amount.currency.code
    desc = plan.charge.description
    if billed:
        lines = [_line(charge_remaining(plan.charge, period, at), f"Remaining time on {desc}")]
    else:
        item = prorate(plan.charge, period, period.start, at)
        lines = [_line(_negate(item), f"{desc}: time before the start")]
    return ChangePreview(kind, at, code, _keep(lines), period, anchor)
