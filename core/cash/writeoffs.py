"""Write-offs of open invoice balances to the write-off account.

A residual within the currency's rule (``WriteOffRule``, or the defaults of
``core.cash.rules.default_limits``) is written off at once; anything larger becomes a
pending request that a finance admin other than the requester approves or rejects.
Posting: write-off expense (debit) against AR (credit), for the billing account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core.audit.log import Actor, AuditRecord, record
from core.cash.access import APPROVERS, OPERATORS, actor_ref, require
from core.cash.rules import WriteOffLimits, default_limits, within_write_off_rule
from core.cash.tables import WriteOff, WriteOffRule
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import EntrySpec, post
from core.ledger.rules import credit, debit
from core.money import AmountParseError, currency, parse_amount

MAX_ID = 2**31 - 1
REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class WriteOffResult:
    status: str  # written_off | pending_approval | not_needed
    write_off_id: int | None = None
    amount_minor: int = 0


# ------------------------------------------------------------------------------- rules


async def limits_for(currency_code: str) -> WriteOffLimits:
    row = await WriteOffRule.select().where(WriteOffRule.currency == currency_code).first()
    if row is None:
        return default_limits(currency_code)
    return WriteOffLimits(row["max_amount_minor"], row["max_percent"])


async def list_rules(currencies: list[str]) -> list[dict[str, Any]]:
    """The rule of each currency in ``currencies`` plus any configured one."""
    rows = {r["currency"]: r for r in await WriteOffRule.select()}
    out = []
    for code in sorted(set(currencies) | rows.keys()):
        limits = await limits_for(code)
        out.append(
            {
                "currency": code,
                "max_amount_minor": limits.max_amount_minor,
                "max_percent": limits.max_percent,
                "configured": code in rows,
                "updated_by": rows[code]["updated_by"] if code in rows else "",
                "updated_at": rows[code]["updated_at"] if code in rows else None,
            }
        )
    return out


def parse_rule(currency_raw: str, amount_raw: str, percent_raw: str) -> WriteOffLimits:
    """Form input → limits, or ``ValidationFailed`` per field. Blank = no limit."""
    errors: dict[str, str] = {}
    code = currency_raw.strip().upper()
    try:
        cur = currency(code)
    except (ValueError, KeyError):
        cur = None
        errors["currency"] = "Enter a three-letter ISO 4217 currency code, e.g. EUR."
    amount: int | None = None
    if amount_raw.strip() and cur is not None:
        try:
            amount = parse_amount(amount_raw, cur).to_minor()
        except AmountParseError as exc:
            errors["max_amount"] = str(exc)
    percent: Decimal | None = None
    if percent_raw.strip():
        try:
            percent = Decimal(percent_raw.strip().rstrip("%").strip())
            if not percent.is_finite() or not Decimal(0) <= percent <= Decimal(100):
                raise InvalidOperation
            if percent.as_tuple().exponent < -4:  # type: ignore[operator]
                errors["max_percent"] = "Use at most four decimals."
        except InvalidOperation:
            errors["max_percent"] = "Enter a percentage between 0 and 100, e.g. 1 or 0.5."
    if errors:
        raise ValidationFailed(errors)
    return WriteOffLimits(amount, percent)


async def set_rule(currency_code: str, limits: WriteOffLimits, actor: Actor) -> None:
    await require(actor, APPROVERS)
    now = datetime.now(UTC)
    async with transaction():
        existing = await for_update(
            WriteOffRule.select(WriteOffRule.id).where(WriteOffRule.currency == currency_code)
        ).first()
        values = {
            WriteOffRule.max_amount_minor: limits.max_amount_minor,
            WriteOffRule.max_percent: limits.max_percent,
            WriteOffRule.updated_by: actor_ref(actor),
            WriteOffRule.updated_at: now,
        }
        if existing is None:
            await WriteOffRule.insert(
                WriteOffRule(
                    currency=currency_code,
                    max_amount_minor=limits.max_amount_minor,
                    max_percent=limits.max_percent,
                    updated_by=actor_ref(actor),
                    updated_at=now,
                )
            )
        else:
            await WriteOffRule.update(values).where(WriteOffRule.id == existing["id"])
        await record(
            AuditRecord(
                actor,
                "write_off_rule.saved",
                "write_off_rule",
                currency_code,
                data={
                    "max_amount_minor": limits.max_amount_minor,
                    "max_percent": None if limits.max_percent is None else str(limits.max_percent),
                },
            )
        )


# ---------------------------------------------------------------------------- services


async def lock_invoice(invoice_id: int) -> dict[str, Any]:
    if not 0 < invoice_id <= MAX_ID:
        raise NotFound("invoice")
    row = await for_update(Invoice.select().where(Invoice.id == invoice_id)).first()
    if row is None or row["status"] == "draft":
        raise NotFound("invoice")
    return row


async def _pending_for(invoice_id: int) -> dict[str, Any] | None:
    return (
        await WriteOff.select()
        .where((WriteOff.invoice == invoice_id) & (WriteOff.status == "pending_approval"))
        .first()
    )


async def _post_write_off(
    inv: dict[str, Any], write_off_id: int, amount: int, actor: Actor
) -> None:
    """Close the invoice's balance to the write-off account (inside a transaction)."""
    now = datetime.now(UTC)
    ba = inv["billing_account"]
    await Invoice.update(
        {
            Invoice.balance_minor: inv["balance_minor"] - amount,
            Invoice.status: "paid" if inv["paid_minor"] > 0 else "uncollectible",
            Invoice.closed_at: now,
        }
    ).where(Invoice.id == inv["id"])
    await post(
        EntrySpec(
            issuing_entity_id=inv["issuing_entity"],
            currency=inv["currency"],
            effective_date=now.date(),
            source_type="write_off",
            source_id=write_off_id,
            event="posted",
            description=f"Write-off {inv['number']}",
            lines=[
                debit(acct.WRITE_OFF, amount, billing_account_id=ba),
                credit(acct.AR, amount, billing_account_id=ba),
            ],
        )
    )
    await record(
        AuditRecord(
            actor,
            "invoice.written_off",
            "invoice",
            inv["id"],
            data={"write_off": write_off_id, "amount": amount},
        )
    )


async def _create(
    inv: dict[str, Any], amount: int, kind: str, status: str, reason: str, actor: Actor
) -> int:
    now = datetime.now(UTC)
    [row] = await WriteOff.insert(
        WriteOff(
            invoice=inv["id"],
            billing_account=inv["billing_account"],
            currency=inv["currency"],
            amount_minor=amount,
            kind=kind,
            status=status,
            reason=reason,
            requested_by=actor_ref(actor),
            requested_at=now,
            decided_by=actor_ref(actor) if status == "written_off" else "",
            decided_at=now if status == "written_off" else None,
        )
    )
    return int(row["id"])


async def _write_off_or_request(
    invoice_id: int, actor: Actor, kind: str, reason: str
) -> WriteOffResult:
    async with transaction():
        inv = await lock_invoice(invoice_id)
        amount = inv["balance_minor"]
        if inv["status"] != "open" or amount <= 0:
            return WriteOffResult("not_needed")
        pending = await _pending_for(invoice_id)
        if pending is not None:
            return WriteOffResult("pending_approval", pending["id"], pending["amount_minor"])
        limits = await limits_for(inv["currency"])
        if within_write_off_rule(amount, inv["total_minor"], limits):
            write_off_id = await _create(inv, amount, kind, "written_off", reason, actor)
            await record(
                AuditRecord(
                    actor,
                    "write_off.posted",
                    "write_off",
                    write_off_id,
                    reason_code="within_rule",
                    data={"invoice": invoice_id, "amount": amount},
                )
            )
            await _post_write_off(inv, write_off_id, amount, actor)
            return WriteOffResult("written_off", write_off_id, amount)
        write_off_id = await _create(inv, amount, kind, "pending_approval", reason, actor)
        await record(
            AuditRecord(
                actor,
                "write_off.requested",
                "write_off",
                write_off_id,
                reason_code="over_rule",
                data={"invoice": invoice_id, "amount": amount, "reason": reason},
            )
        )
        return WriteOffResult("pending_approval", write_off_id, amount)


async def write_off_residual(invoice_id: int, actor: Actor) -> WriteOffResult:
    """After a payment leaves a residual: write it off at once when it is within the
    currency's rule, else create a pending request for a finance admin; nothing to do
    when the invoice is not open (``not_needed``). A second call while a request is
    pending returns that request."""
    await require(actor, OPERATORS, system=True)
    return await _write_off_or_request(invoice_id, actor, "residual", "residual after payment")


async def request_write_off(invoice_id: int, reason: str, actor: Actor) -> WriteOffResult:
    """Staff ask to write off an invoice's whole open balance: within the rule it is
    written off at once, over it a finance admin other than the requester decides."""
    await require(actor, OPERATORS)
    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": "Give a reason for the write-off."})
    if len(reason) > REASON_MAX:
        raise ValidationFailed({"reason": f"Keep the reason under {REASON_MAX} characters."})
    result = await _write_off_or_request(invoice_id, actor, "manual", reason)
    if result.status == "not_needed":
        raise Conflict("This invoice has no open balance to write off.")
    return result


async def _decide(write_off_id: int, actor: Actor) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lock the invoice, then the request; check the approver (SoD)."""
    await require(actor, APPROVERS)
    if not 0 < write_off_id <= MAX_ID:
        raise NotFound("write-off")
    head = await WriteOff.select(WriteOff.invoice).where(WriteOff.id == write_off_id).first()
    if head is None:
        raise NotFound("write-off")
    inv = await lock_invoice(head["invoice"])
    request = await for_update(WriteOff.select().where(WriteOff.id == write_off_id)).first()
    assert request is not None
    if request["status"] != "pending_approval":
        raise Conflict("This write-off request was already decided.")
    if request["requested_by"] == actor_ref(actor):
        raise Conflict("You requested this write-off: another finance admin must decide it.")
    return inv, request


async def approve_write_off(write_off_id: int, actor: Actor, note: str = "") -> WriteOffResult:
    async with transaction():
        inv, request = await _decide(write_off_id, actor)
        now = datetime.now(UTC)
        balance = inv["balance_minor"] if inv["status"] == "open" else 0
        if balance <= 0:
            await WriteOff.update(
                {
                    WriteOff.status: "canceled",
                    WriteOff.decided_by: actor_ref(actor),
                    WriteOff.decided_at: now,
                    WriteOff.decision_note: "nothing left to write off",
                }
            ).where(WriteOff.id == write_off_id)
            await record(AuditRecord(actor, "write_off.canceled", "write_off", write_off_id))
            return WriteOffResult("not_needed", write_off_id)
        if balance > request["amount_minor"]:
            raise Conflict(
                "The invoice balance grew since the request: reject it and request again."
            )
        await WriteOff.update(
            {
                WriteOff.status: "written_off",
                WriteOff.amount_minor: balance,
                WriteOff.decided_by: actor_ref(actor),
                WriteOff.decided_at: now,
                WriteOff.decision_note: note.strip()[:REASON_MAX],
            }
        ).where(WriteOff.id == write_off_id)
        await record(
            AuditRecord(
                actor,
                "write_off.approved",
                "write_off",
                write_off_id,
                data={
                    "invoice": inv["id"],
                    "amount": balance,
                    "requested_by": request["requested_by"],
                },
            )
        )
        await _post_write_off(inv, write_off_id, balance, actor)
        return WriteOffResult("written_off", write_off_id, balance)


async def reject_write_off(write_off_id: int, actor: Actor, note: str) -> None:
    note = note.strip()
    if not note:
        raise ValidationFailed({"note": "Say why the write-off is rejected."})
    async with transaction():
        _inv, _request = await _decide(write_off_id, actor)
        await WriteOff.update(
            {
                WriteOff.status: "rejected",
                WriteOff.decided_by: actor_ref(actor),
                WriteOff.decided_at: datetime.now(UTC),
                WriteOff.decision_note: note[:REASON_MAX],
            }
        ).where(WriteOff.id == write_off_id)
        await record(
            AuditRecord(
                actor, "write_off.rejected", "write_off", write_off_id, data={"note": note[:200]}
            )
        )


async def pending_write_offs() -> list[dict[str, Any]]:
    return (
        await WriteOff.select(
            WriteOff.all_columns(),
            WriteOff.invoice.number.as_alias("invoice_number"),
            WriteOff.invoice.total_minor.as_alias("invoice_total"),
            WriteOff.billing_account.code.as_alias("account_code"),
            WriteOff.billing_account.name.as_alias("account_name"),
        )
        .where(WriteOff.status == "pending_approval")
        .order_by(WriteOff.requested_at)
    )


async def recent_write_offs(limit: int = 50) -> list[dict[str, Any]]:
    return (
        await WriteOff.select(
            WriteOff.all_columns(),
            WriteOff.invoice.number.as_alias("invoice_number"),
            WriteOff.billing_account.code.as_alias("account_code"),
        )
        .where(WriteOff.status != "pending_approval")
        .order_by(WriteOff.id, ascending=False)
        .limit(limit)
    )
