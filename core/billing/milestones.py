"""Milestone charges: agreed amounts billed once their trigger is recorded.

Staff record a milestone for a billing account (description, amount in the account's
currency, the trigger in words, e.g. "acceptance of phase 1"). It waits, unbilled, until
staff record that the trigger happened (``record_trigger``); the next invoice run puts it
on the account's invoice, once (the pending charge then carries the invoice). A milestone
not yet triggered can be withdrawn. Every step is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.billing.tables import PendingCharge
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import BillingAccount
from core.money import AmountParseError, parse_amount


async def record_milestone(
    billing_account_id: int, description: str, amount: str, trigger: str, actor: Actor
) -> int:
    """A new milestone charge waiting for its trigger; returns its id."""
    description, trigger = description.strip(), trigger.strip()
    errors: dict[str, str] = {}
    account = (
        await BillingAccount.select(BillingAccount.currency)
        .where(BillingAccount.id == billing_account_id)
        .first()
    )
    if account is None:
        errors["account"] = "Choose a billing account"
    if not 1 <= len(description) <= 300:
        errors["description"] = "Describe the milestone (up to 300 characters)"
    if not 1 <= len(trigger) <= 500:
        errors["trigger"] = "Say what triggers the charge, e.g. acceptance of phase 1"
    minor = 0
    if account is not None:
        try:
            money = parse_amount(amount, account["currency"])
            if not money.is_positive():
                raise AmountParseError("Enter an amount above zero")
            minor = money.to_minor()
        except AmountParseError as exc:
            errors["amount"] = str(exc)
    if errors:
        raise ValidationFailed(errors)
    assert account is not None
    async with transaction():
        [row] = await PendingCharge.insert(
            PendingCharge(
                billing_account=billing_account_id,
                kind="milestone",
                description=description,
                currency=account["currency"],
                amount_minor=minor,
                trigger=trigger,
                created_at=datetime.now(UTC),
            )
        )
        charge_id = int(row["id"])
        await record(
            AuditRecord(
                actor,
                "milestone.recorded",
                "pending_charge",
                charge_id,
                data={"amount": minor, "currency": account["currency"], "trigger": trigger},
            )
        )
    return charge_id


async def _locked(charge_id: int) -> dict[str, Any]:
    row = await for_update(
        PendingCharge.select().where(
            (PendingCharge.id == charge_id) & (PendingCharge.kind == "milestone")
        )
    ).first()
    if row is None:
        raise NotFound("milestone")
    return row


async def record_trigger(charge_id: int, actor: Actor, note: str = "") -> None:
    """The trigger happened: the milestone is billed by the next run."""
    async with transaction():
        row = await _locked(charge_id)
        if row["triggered_at"] is not None:
            raise Conflict("this milestone's trigger is already recorded")
        await PendingCharge.update({PendingCharge.triggered_at: datetime.now(UTC)}).where(
            PendingCharge.id == charge_id
        )
        await record(
            AuditRecord(
                actor,
                "milestone.triggered",
                "pending_charge",
                charge_id,
                data={"note": note.strip()[:300]},
            )
        )


async def withdraw(charge_id: int, actor: Actor, reason: str) -> None:
    """Remove a milestone whose trigger has not been recorded (nothing was billed)."""
    if not reason.strip():
        raise ValidationFailed({"reason": "Give a reason"})
    async with transaction():
        row = await _locked(charge_id)
        if row["triggered_at"] is not None or row["invoice"] is not None:
            raise Conflict("a triggered or billed milestone cannot be withdrawn")
        await PendingCharge.delete().where(PendingCharge.id == charge_id)
        await record(
            AuditRecord(
                actor,
                "milestone.withdrawn",
                "pending_charge",
                charge_id,
                reason_code=reason.strip()[:64],
                data={"amount": row["amount_minor"], "description": row["description"]},
            )
        )


async def list_milestones(limit: int = 200) -> list[dict[str, Any]]:
    return (
        await PendingCharge.select(
            PendingCharge.all_columns(),
            PendingCharge.billing_account.code.as_alias("account_code"),
            PendingCharge.billing_account.name.as_alias("account_name"),
            PendingCharge.invoice.number.as_alias("invoice_number"),
        )
        .where(PendingCharge.kind == "milestone")
        .order_by(PendingCharge.id, ascending=False)
        .limit(limit)
    )
