"""Subscription services: create, preview and confirm changes, cancel, reactivate, past due.

Every service is one transaction. Services that change a subscription lock its row
(``SELECT … FOR UPDATE``), check the caller's ``expected_version`` (the version the
preview was computed on: a change made in between is a ``Conflict``, never a mixed
state), recompute the preview with the pure rules of ``core.billing.changes`` at the
previewed instant, and record exactly those lines as ``PendingCharge`` rows (billed by the
next invoice of the run), one ``SubscriptionChange`` row and an audit event, then bump
``version``.

The preview's instant travels with the confirmation (``at``): the confirmation bills what
the preview showed, to the cent. A preview is good for ``PREVIEW_VALID_SECONDS`` and only
while the subscription's period still contains it; after that, preview again.

``account_ids``: the billing accounts the caller may see (a customer's scope); ``None``
for staff. A subscription outside them is ``NotFound``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from core.audit.log import Actor, AuditRecord, record
from core.billing.changes import (
    ChangePreview,
    Plan,
    SubscriptionState,
    plan_charge,
    preview_cancel,
    preview_change,
    preview_start,
)
from core.billing.periods import (
    BillingAnchor,
    Interval,
    Period,
    as_timezone,
    period_boundary,
    period_containing,
)
from core.billing.run_tables import BilledPeriod
from core.billing.tables import PendingCharge, Subscription, SubscriptionChange
from core.catalog.price_book import PriceRow, definition_from_row, discount_from_row
from core.catalog.services import PRICE_COLUMNS, list_prices
from core.catalog.tables import Discount, Price
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import BillingAccount

PREVIEW_VALID_SECONDS: Final = 15 * 60
MAX_ID: Final = 2**31  # ids are int4 serials: anything larger is simply not found
ACTIONS: Final = ("change", "cancel_now", "cancel_at_period_end", "reactivate")
ACTION_LABELS: Final = {
    "change": "Change plan or quantity",
    "cancel_now": "Cancel now",
    "cancel_at_period_end": "Cancel at the end of the period",
    "reactivate": "Reactivate",
}
STATUS_LABELS: Final = {
    "trialing": "Trial",
    "active": "Active",
    "past_due": "Past due",
    "canceled": "Canceled",
}
_QUANTITY = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,6})?$")
_CLOCK_SKEW = timedelta(seconds=5)


def now() -> datetime:
    return datetime.now(UTC)


def parse_quantity(text: object) -> Decimal:
    """A quantity typed by a person: above zero, at most 9 digits and 6 decimals."""
    cleaned = text.strip().replace(",", "") if isinstance(text, str) else ""
    if not _QUANTITY.fullmatch(cleaned) or Decimal(cleaned) <= 0:
        raise ValidationFailed({"quantity": "Enter a quantity above zero, e.g. 5"})
    return Decimal(cleaned)


def parse_at(text: object) -> datetime:
    """The preview instant posted back by a confirmation form (ISO 8601, aware)."""
    try:
        at = datetime.fromisoformat(text) if isinstance(text, str) and len(text) < 40 else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ValidationFailed({"at": "The preview is missing or damaged: preview again"})
    return at.astimezone(UTC)


def anchor_of(row: dict[str, Any]) -> BillingAnchor:
    """The billing anchor of a subscription row."""
    return BillingAnchor(row["anchor_day"], row["anchor_month"], row["anchor_year"])


def plan_description(price: dict[str, Any], quantity: Decimal) -> str:
    name = price.get("nickname") or price.get("product_name") or price["code"]
    qty = quantity.normalize()
    return f"{name} \N{MULTIPLICATION SIGN} {qty:f}" if quantity != 1 else str(name)


# --------------------------------------------------------------------------- loading


async def _price(price_id: int) -> dict[str, Any]:
    row = await Price.select(*PRICE_COLUMNS).where(Price.id == price_id).first()
    if row is None:
        raise NotFound("price")
    return row


async def _discount(discount_id: int | None) -> dict[str, Any] | None:
    if discount_id is None:
        return None
    return await Discount.select().where(Discount.id == discount_id).first()


def _plan(
    price: dict[str, Any], quantity: Decimal, discount: dict[str, Any] | None, index: int
) -> Plan:
    definition = definition_from_row(PriceRow.of(price))
    in_force = None
    if discount is not None:
        d = discount_from_row(discount)
        if d.applies_in_period(index):
            in_force = d
    charge = plan_charge(
        plan_description(price, quantity),
        definition,
        quantity,
        discount=in_force,
        metered=bool(price["metric"]),
    )
    return Plan(price["id"], quantity, charge, Interval(price["interval_months"]))


async def _timezone(billing_account_id: int) -> str:
    row = (
        await BillingAccount.select(BillingAccount.timezone)
        .where(BillingAccount.id == billing_account_id)
        .first()
    )
    return row["timezone"] if row and row["timezone"] else "UTC"


async def _state(sub: dict[str, Any]) -> tuple[SubscriptionState, dict[str, Any]]:
    price = await _price(sub["price"])
    discount = await _discount(sub["discount"])
    billed = await _billed(sub)
    plan = _plan(price, sub["quantity"], discount, _discount_index(sub, billed))
    state = SubscriptionState(
        status=sub["status"],
        plan=plan,
        period=Period(sub["current_period_start"], sub["current_period_end"]),
        anchor=anchor_of(sub),
        timezone=await _timezone(sub["billing_account"]),
        cancel_at_period_end=sub["cancel_at_period_end"],
        billed=billed,
    )
    return state, price


def _discount_index(sub: dict[str, Any], billed: bool) -> int:
    """The discount period index of the current period: ``discount_periods_used`` counts
    the periods invoiced with the discount so far, this one included once it is billed."""
    used = int(sub["discount_periods_used"])
    return max(used - 1, 0) if billed else used


async def _billed(sub: dict[str, Any]) -> bool:
    """Has the invoice run billed the current period? (It writes ``billed_period`` in the
    transaction that invoices it, holding this subscription's row lock.)"""
    return await _period_billed(sub["id"], sub["current_period_start"])


async def _period_billed(subscription_id: int, period_start: datetime) -> bool:
    return await BilledPeriod.exists().where(
        (BilledPeriod.subscription == subscription_id) & (BilledPeriod.period_start == period_start)
    )


async def _load(
    subscription_id: int, account_ids: Collection[int] | None, *, lock: bool
) -> dict[str, Any]:
    if not 0 < subscription_id < MAX_ID:
        raise NotFound("subscription")
    query = Subscription.select().where(Subscription.id == subscription_id)
    row = await (for_update(query) if lock else query).first()
    if row is None or (account_ids is not None and row["billing_account"] not in account_ids):
        raise NotFound("subscription")
    return row


# --------------------------------------------------------------------------- previews


@dataclass(frozen=True, slots=True)
class Request:
    """What a person asks for: an action and, for ``change``, the new price and quantity."""

    action: str
    price_id: int | None = None
    quantity: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PreviewResult:
    subscription_id: int
    version: int
    request: Request
    preview: ChangePreview
    from_label: str
    to_label: str
    billed: bool  # was the current period invoiced when the preview was computed


async def _compute(
    sub: dict[str, Any], req: Request, at: datetime, expected_billed: bool | None = None
) -> tuple[ChangePreview, dict[str, Any], dict[str, Any] | None, bool]:
    """The pure preview of ``req`` on ``sub`` at ``at`` (validating the request), and
    whether the current period was billed."""
    if req.action not in ACTIONS:
        raise ValidationFailed({"action": "Choose what to do"})
    state, price = await _state(sub)
    billed = state.billed
    if expected_billed is not None and expected_billed != billed:
        raise Conflict(
            "An invoice for this period was issued since your preview, which changes the "
            "proration. Nothing was applied: preview again."
        )
    status = sub["status"]
    if req.action == "change":
        if status == "canceled":
            raise Conflict("This subscription is canceled: reactivate it first.")
        if req.price_id is None or req.quantity is None:
            raise ValidationFailed({"price": "Choose a plan and a quantity"})
        new_price = price if req.price_id == price["id"] else await _price(req.price_id)
        if new_price["id"] != price["id"] and not new_price["active"]:
            raise ValidationFailed({"price": "That plan is no longer offered"})
        if new_price["currency"] != price["currency"]:
            raise ValidationFailed({"price": f"Choose a plan in {price['currency']}"})
        if new_price["id"] == price["id"] and req.quantity == sub["quantity"]:
            raise ValidationFailed({"quantity": "That is the current plan and quantity"})
        discount = await _discount(sub["discount"])
        plan = _plan(new_price, req.quantity, discount, _discount_index(sub, billed))
        return preview_change(state, plan, at), price, new_price, billed
    if req.action in ("cancel_now", "cancel_at_period_end"):
        if status == "canceled":
            raise Conflict("This subscription is already canceled.")
        if req.action == "cancel_at_period_end" and sub["cancel_at_period_end"]:
            raise Conflict("This subscription already ends at the end of the period.")
        end = req.action == "cancel_at_period_end"
        return preview_cancel(state, at, at_period_end=end), price, None, billed
    # reactivate
    if status != "canceled":
        if not sub["cancel_at_period_end"]:
            raise Conflict("This subscription is not canceled.")
        return (
            ChangePreview("reactivate", at, price["currency"], (), state.period, state.anchor),
            price,
            None,
            billed,
        )
    if not price["active"]:
        raise Conflict("Its plan is no longer offered: start a new subscription instead.")
    period = period_containing(at, state.anchor, state.plan.interval, state.timezone)
    billed_before = await _period_billed(sub["id"], period.start)
    restart = preview_start(
        state.plan, state.anchor, state.timezone, at, kind="restart", billed=billed_before
    )
    return restart, price, None, billed


def _labels(
    sub: dict[str, Any], req: Request, price: dict[str, Any], new_price: dict[str, Any] | None
) -> tuple[str, str]:
    old = plan_description(price, sub["quantity"])
    if req.action == "change" and new_price is not None and req.quantity is not None:
        return old, plan_description(new_price, req.quantity)
    return old, ACTION_LABELS[req.action]


async def preview(
    subscription_id: int,
    req: Request,
    *,
    account_ids: Collection[int] | None = None,
    at: datetime | None = None,
) -> PreviewResult:
    """What ``req`` would bill if confirmed now (read-only; nothing is locked)."""
    at = at or now()
    sub = await _load(subscription_id, account_ids, lock=False)
    _check_in_period(sub, at)
    result, price, new_price, billed = await _compute(sub, req, at)
    frm, to = _labels(sub, req, price, new_price)
    return PreviewResult(subscription_id, sub["version"], req, result, frm, to, billed)


def _check_in_period(sub: dict[str, Any], at: datetime) -> None:
    if sub["status"] == "canceled":
        return  # a restart starts a new period at ``at``
    if at < sub["current_period_start"]:
        raise Conflict(
            "The subscription's period has moved on since this preview: preview the change again."
        )
    if at >= sub["current_period_end"]:
        raise Conflict(
            "The subscription's current period has ended and its renewal is not invoiced yet: "
            "try again after the next invoice run."
        )


# --------------------------------------------------------------------------- confirmations


@dataclass(frozen=True, slots=True)
class ChangeResult:
    subscription_id: int
    change_id: int
    version: int
    preview: ChangePreview


async def confirm(
    subscription_id: int,
    req: Request,
    *,
    expected_version: int,
    at: datetime,
    actor: Actor,
    account_ids: Collection[int] | None = None,
    clock: datetime | None = None,
    expected_billed: bool | None = None,
) -> ChangeResult:
    """Apply ``req`` as previewed at ``at`` on version ``expected_version`` (and, when
    given, with the current period billed or not as it was for the preview)."""
    current = clock or now()
    if at > current + _CLOCK_SKEW or current - at > timedelta(seconds=PREVIEW_VALID_SECONDS):
        raise Conflict("This preview has expired: preview the change again.")
    async with transaction():
        sub = await _load(subscription_id, account_ids, lock=True)
        if sub["version"] != expected_version:
            raise Conflict(
                "This subscription was changed by someone else since your preview "
                f"(version {expected_version}, now {sub['version']}). "
                "Nothing was applied: review it and preview again."
            )
        _check_in_period(sub, at)
        result, price, new_price, _ = await _compute(sub, req, at, expected_billed)
        values: dict[Any, Any] = {}
        status = sub["status"]
        if req.action == "change":
            assert new_price is not None
            assert req.quantity is not None
            values = {Subscription.price: new_price["id"], Subscription.quantity: req.quantity}
        elif req.action == "cancel_now":
            values = {
                Subscription.status: "canceled",
                Subscription.canceled_at: at,
                Subscription.cancel_at_period_end: False,
            }
            status = "canceled"
        elif req.action == "cancel_at_period_end":
            values = {Subscription.cancel_at_period_end: True}
        elif status == "canceled":  # restart
            values = {
                Subscription.status: "active",
                Subscription.canceled_at: None,
                Subscription.cancel_at_period_end: False,
                Subscription.trial_end: None,
            }
            status = "active"
        else:
            values = {Subscription.cancel_at_period_end: False}
        if result.period is not None and sub["status"] != "trialing":
            values[Subscription.current_period_start] = result.period.start
            values[Subscription.current_period_end] = result.period.end
        if result.anchor is not None:
            values[Subscription.anchor_day] = result.anchor.day
            values[Subscription.anchor_month] = result.anchor.month
            values[Subscription.anchor_year] = result.anchor.year
        change_id = await _record(
            sub,
            result,
            actor,
            to_price=(new_price or price)["id"],
            to_quantity=req.quantity if req.action == "change" else sub["quantity"],
        )
        version = sub["version"] + 1
        await Subscription.update(
            {**values, Subscription.version: version, Subscription.updated_at: current}
        ).where((Subscription.id == subscription_id) & (Subscription.version == sub["version"]))
        await record(
            AuditRecord(
                actor,
                f"subscription.{result.kind}",
                "subscription",
                subscription_id,
                data={
                    "change_id": change_id,
                    "from_price": price["id"],
                    "to_price": (new_price or price)["id"],
                    "from_quantity": str(sub["quantity"]),
                    "to_quantity": str(req.quantity or sub["quantity"]),
                    "status": status,
                    "at": at.isoformat(),
                    "net_minor": result.net.to_minor(),
                    "version": version,
                },
            )
        )
    return ChangeResult(subscription_id, change_id, version, result)


async def _record(
    sub: dict[str, Any],
    result: ChangePreview,
    actor: Actor,
    *,
    to_price: int,
    to_quantity: Decimal,
) -> int:
    """The change row and its pending charges (inside the caller's transaction)."""
    stamp = now()
    [row] = await SubscriptionChange.insert(
        SubscriptionChange(
            subscription=sub["id"],
            kind=result.kind,
            from_price=sub["price"],
            to_price=to_price,
            from_quantity=sub["quantity"],
            to_quantity=to_quantity,
            effective_at=result.at,
            credit_minor=result.credit.to_minor(),
            charge_minor=result.charge.to_minor(),
            actor=f"{actor.type}:{actor.id}"[:120],
            created_at=stamp,
        )
    )
    if result.lines:
        await PendingCharge.insert(
            *[
                PendingCharge(
                    billing_account=sub["billing_account"],
                    subscription=sub["id"],
                    kind=line.kind,
                    description=line.description[:300],
                    currency=line.amount.currency.code,
                    amount_minor=line.amount.to_minor(),
                    period_start=line.period_start,
                    period_end=line.period_end,
                    subscription_change=row["id"],
                    created_at=stamp,
                )
                for line in result.lines
            ]
        )
    return int(row["id"])


# --------------------------------------------------------------------------- create


def local_midnight(day: date, tz: str) -> datetime:
    """The first instant of ``day`` in ``tz`` (the end of a DST gap if midnight is missing)."""
    return period_boundary(day.year, day.month, day.day, tz)


async def create(
    billing_account_id: int,
    price_id: int,
    quantity: Decimal,
    actor: Actor,
    *,
    start_date: date | None = None,
    anchor_day: int | None = None,
    trial_days: int | None = None,
    discount_id: int | None = None,
) -> int:
    """Create a subscription starting at local midnight of ``start_date`` (default: today
    in the account's time zone). With a trial (the price's ``trial_days`` unless given) it
    is ``trialing`` until ``trial_end`` and billing starts then. Periods are anchored on
    ``anchor_day`` (default: the day billing starts); when billing starts mid-period, the
    part of the first period before the start is credited."""
    errors: dict[str, str] = {}
    if anchor_day is not None and not 1 <= anchor_day <= 31:
        errors["anchor_day"] = "Choose a day between 1 and 31"
    if trial_days is not None and not 0 <= trial_days <= 730:
        errors["trial_days"] = "Enter 0 to 730 days"
    if quantity <= 0:
        errors["quantity"] = "Enter a quantity above zero, e.g. 5"
    async with transaction():
        account = (
            await BillingAccount.select(
                BillingAccount.id, BillingAccount.currency, BillingAccount.timezone
            )
            .where(BillingAccount.id == billing_account_id)
            .first()
        )
        if account is None:
            raise NotFound("billing account")
        price = await Price.select(*PRICE_COLUMNS).where(Price.id == price_id).first()
        if price is None or not price["active"]:
            errors["price"] = "Choose an offered plan"
        elif price["currency"] != account["currency"]:
            errors["price"] = f"Choose a plan in the account's currency ({account['currency']})"
        discount = None
        if discount_id is not None:
            discount = await _discount(discount_id)
            if discount is None:
                errors["discount"] = "Choose a known discount"
            elif discount["kind"] == "amount" and discount["currency"] != account["currency"]:
                errors["discount"] = "That discount is in another currency"
        if errors:
            raise ValidationFailed(errors)
        assert price is not None
        tz = account["timezone"] or "UTC"
        current = now()
        start_day = start_date or current.astimezone(as_timezone(tz)).date()
        start = local_midnight(start_day, tz)
        trial = price["trial_days"] if trial_days is None else trial_days
        plan = _plan(price, quantity, discount, 0)
        if trial:
            billing_day = start_day + timedelta(days=trial)
            trial_end = local_midnight(billing_day, tz)
            anchor = BillingAnchor(
                anchor_day or billing_day.day, billing_day.month, billing_day.year
            )
            period = Period(start, trial_end)
            result = ChangePreview("create", start, price["currency"], (), period, anchor)
            status = "trialing"
        else:
            trial_end = None
            anchor = BillingAnchor(anchor_day or start_day.day, start_day.month, start_day.year)
            result = preview_start(plan, anchor, tz, start)
            assert result.period is not None
            period = result.period
            status = "active"
        [row] = await Subscription.insert(
            Subscription(
                billing_account=billing_account_id,
                price=price_id,
                quantity=quantity,
                status=status,
                anchor_day=anchor.day,
                anchor_month=anchor.month,
                anchor_year=anchor.year,
                current_period_start=period.start,
                current_period_end=period.end,
                trial_end=trial_end,
                discount=discount_id,
                discount_periods_used=0,
                version=1,
                created_at=current,
                updated_at=current,
            )
        )
        sub = await Subscription.select().where(Subscription.id == row["id"]).first()
        assert sub is not None
        change_id = await _record(sub, result, actor, to_price=price_id, to_quantity=quantity)
        await record(
            AuditRecord(
                actor,
                "subscription.created",
                "subscription",
                row["id"],
                data={
                    "billing_account_id": billing_account_id,
                    "price_id": price_id,
                    "quantity": str(quantity),
                    "status": status,
                    "start": start.isoformat(),
                    "trial_end": trial_end.isoformat() if trial_end else None,
                    "anchor": [anchor.day, anchor.month, anchor.year],
                    "change_id": change_id,
                },
            )
        )
    return int(row["id"])


# --------------------------------------------------------------------------- lifecycle


async def set_past_due(
    subscription_id: int, past_due: bool, actor: Actor, reason: str = ""
) -> bool:
    """For payments and dunning: ``active`` -> ``past_due`` (a renewal invoice is overdue)
    or back (it was paid). Returns whether anything changed; trialing and canceled
    subscriptions are left alone."""
    async with transaction():
        sub = await _load(subscription_id, None, lock=True)
        frm, to = ("active", "past_due") if past_due else ("past_due", "active")
        if sub["status"] != frm:
            return False
        await Subscription.update(
            {
                Subscription.status: to,
                Subscription.version: sub["version"] + 1,
                Subscription.updated_at: now(),
            }
        ).where(Subscription.id == subscription_id)
        kind = "past_due" if past_due else "past_due_cleared"
        await SubscriptionChange.insert(
            SubscriptionChange(
                subscription=subscription_id,
                kind=kind,
                from_price=sub["price"],
                to_price=sub["price"],
                from_quantity=sub["quantity"],
                to_quantity=sub["quantity"],
                effective_at=now(),
                actor=f"{actor.type}:{actor.id}"[:120],
                created_at=now(),
            )
        )
        await record(
            AuditRecord(
                actor, f"subscription.{kind}", "subscription", subscription_id, reason_code=reason
            )
        )
    return True


async def end_trial(subscription_id: int, actor: Actor, *, clock: datetime | None = None) -> bool:
    """A trial that has ended: the subscription becomes active and its first paid period
    starts at ``trial_end`` (idempotent: False when there is nothing to do)."""
    current = clock or now()
    async with transaction():
        sub = await _load(subscription_id, None, lock=True)
        if sub["status"] != "trialing" or sub["trial_end"] is None or sub["trial_end"] > current:
            return False
        state, price = await _state(sub)
        result = preview_start(
            state.plan, state.anchor, state.timezone, sub["trial_end"], kind="trial_ended"
        )
        assert result.period is not None
        change_id = await _record(
            sub, result, actor, to_price=price["id"], to_quantity=sub["quantity"]
        )
        await Subscription.update(
            {
                Subscription.status: "active",
                Subscription.current_period_start: result.period.start,
                Subscription.current_period_end: result.period.end,
                Subscription.version: sub["version"] + 1,
                Subscription.updated_at: current,
            }
        ).where(Subscription.id == subscription_id)
        await record(
            AuditRecord(
                actor,
                "subscription.trial_ended",
                "subscription",
                subscription_id,
                data={"change_id": change_id, "period_start": result.period.start.isoformat()},
            )
        )
    return True


async def end_at_period_end(
    subscription_id: int, actor: Actor, *, clock: datetime | None = None
) -> bool:
    """A subscription set to cancel at period end whose period is over becomes canceled
    (idempotent). Nothing is credited: the period was used in full."""
    current = clock or now()
    async with transaction():
        sub = await _load(subscription_id, None, lock=True)
        if (
            sub["status"] == "canceled"
            or not sub["cancel_at_period_end"]
            or sub["current_period_end"] > current
        ):
            return False
        await Subscription.update(
            {
                Subscription.status: "canceled",
                Subscription.canceled_at: sub["current_period_end"],
                Subscription.cancel_at_period_end: False,
                Subscription.version: sub["version"] + 1,
                Subscription.updated_at: current,
            }
        ).where(Subscription.id == subscription_id)
        await SubscriptionChange.insert(
            SubscriptionChange(
                subscription=subscription_id,
                kind="canceled_at_period_end",
                from_price=sub["price"],
                to_price=sub["price"],
                from_quantity=sub["quantity"],
                to_quantity=sub["quantity"],
                effective_at=sub["current_period_end"],
                actor=f"{actor.type}:{actor.id}"[:120],
                created_at=current,
            )
        )
        await record(AuditRecord(actor, "subscription.canceled", "subscription", subscription_id))
    return True


async def due_trials(clock: datetime | None = None, limit: int = 500) -> list[int]:
    rows = (
        await Subscription.select(Subscription.id)
        .where((Subscription.status == "trialing") & (Subscription.trial_end <= (clock or now())))
        .order_by(Subscription.id)
        .limit(limit)
    )
    return [r["id"] for r in rows]


async def due_cancellations(clock: datetime | None = None, limit: int = 500) -> list[int]:
    rows = (
        await Subscription.select(Subscription.id)
        .where(
            (Subscription.cancel_at_period_end.eq(True))
            & (Subscription.status != "canceled")
            & (Subscription.current_period_end <= (clock or now()))
        )
        .order_by(Subscription.id)
        .limit(limit)
    )
    return [r["id"] for r in rows]


# --------------------------------------------------------------------------- reading

_LIST_COLUMNS = (
    Subscription.id,
    Subscription.billing_account,
    Subscription.billing_account.name.as_alias("account_name"),
    Subscription.billing_account.code.as_alias("account_code"),
    Subscription.billing_account.timezone.as_alias("timezone"),
    Subscription.price,
    Subscription.price.code.as_alias("price_code"),
    Subscription.price.nickname.as_alias("nickname"),
    Subscription.price.currency.as_alias("currency"),
    Subscription.price.interval_months.as_alias("interval_months"),
    Subscription.price.product.name.as_alias("product_name"),
    Subscription.quantity,
    Subscription.status,
    Subscription.current_period_start,
    Subscription.current_period_end,
    Subscription.trial_end,
    Subscription.cancel_at_period_end,
    Subscription.canceled_at,
    Subscription.version,
    Subscription.discount,
    Subscription.discount.name.as_alias("discount_name"),
)


def _decorate(row: dict[str, Any]) -> dict[str, Any]:
    row["plan"] = plan_description({**row, "code": row["price_code"]}, row["quantity"])
    row["status_label"] = STATUS_LABELS.get(row["status"], row["status"])
    if row["cancel_at_period_end"] and row["status"] != "canceled":
        row["status_label"] += " (ends at period end)"
    return row


async def list_subscriptions(
    account_ids: Collection[int] | None = None, *, limit: int = 200
) -> list[dict[str, Any]]:
    query = Subscription.select(*_LIST_COLUMNS).order_by(Subscription.id).limit(limit)
    if account_ids is not None:
        query = query.where(Subscription.billing_account.is_in(sorted(account_ids) or [-1]))
    return [_decorate(r) for r in await query]


async def get_subscription(
    subscription_id: int, account_ids: Collection[int] | None = None
) -> dict[str, Any]:
    row = (
        await Subscription.select(*_LIST_COLUMNS).where(Subscription.id == subscription_id).first()
    )
    if row is None or (account_ids is not None and row["billing_account"] not in account_ids):
        raise NotFound("subscription")
    return _decorate(row)


async def history(subscription_id: int) -> list[dict[str, Any]]:
    return (
        await SubscriptionChange.select()
        .where(SubscriptionChange.subscription == subscription_id)
        .order_by(SubscriptionChange.id, ascending=False)
    )


async def pending_charges(subscription_id: int) -> list[dict[str, Any]]:
    return (
        await PendingCharge.select()
        .where(PendingCharge.subscription == subscription_id)
        .order_by(PendingCharge.id)
    )


async def plan_options(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    """Active prices in the subscription's currency (what it can be changed to)."""
    return await list_prices(currency=subscription["currency"], active_only=True)


@dataclass(frozen=True, slots=True)
class LifecycleReport:
    trials_ended: int
    canceled: int


async def run_lifecycle(actor: Actor, clock: datetime | None = None) -> LifecycleReport:
    """End every trial and every cancel-at-period-end that is due (each subscription in
    its own transaction, idempotent: a second run finds nothing to do)."""
    current = clock or now()
    trials = canceled = 0
    while ids := await due_trials(current):
        done = [await end_trial(i, actor, clock=current) for i in ids]
        trials += sum(done)
        if not any(done):
            break
    while ids := await due_cancellations(current):
        done = [await end_at_period_end(i, actor, clock=current) for i in ids]
        canceled += sum(done)
        if not any(done):
            break
    return LifecycleReport(trials, canceled)
