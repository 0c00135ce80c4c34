"""Period locks: a closed month of an issuing entity's books takes no new entries.

Months are calendar months of the entry's effective date ("YYYY-MM"). ``post()`` refuses
an entry dated in a locked month; finalization holds invoices whose issue date falls in
one. Locking and unlocking take a reason, are restricted to finance admins by the
portal, and write audit events.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime

from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import IssuingEntity
from core.ledger.tables import PeriodLock

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class PeriodLockedError(Conflict):
    """An entry or a document dated in a locked period."""


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def parse_period(text: str) -> str:
    value = (text or "").strip()
    if not _PERIOD.match(value):
        raise ValidationFailed({"period": "Enter a month as YYYY-MM, e.g. 2026-10."})
    return value


async def locked_periods(pairs: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of the (issuing entity id, "YYYY-MM") pairs are locked."""
    wanted = set(pairs)
    if not wanted:
        return set()
    entities = sorted({e for e, _ in wanted})
    periods = sorted({p for _, p in wanted})
    rows = await PeriodLock.select(PeriodLock.issuing_entity, PeriodLock.period).where(
        PeriodLock.locked.eq(True)
        & PeriodLock.issuing_entity.is_in(entities)
        & PeriodLock.period.is_in(periods)
    )
    return {(int(r["issuing_entity"]), r["period"]) for r in rows} & wanted


async def ensure_open(issuing_entity_id: int, effective_date: date) -> None:
    period = period_of(effective_date)
    if await locked_periods([(issuing_entity_id, period)]):
        raise PeriodLockedError(
            f"the period {period} is locked for this issuing entity: nothing can be posted "
            f"dated {effective_date.isoformat()}; a finance admin must unlock it first"
        )


async def _set(issuing_entity_id: int, period_text: str, reason: str, actor: Actor, lock: bool):
    period = parse_period(period_text)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"reason": "Give a reason (it is kept in the audit log)."})
    if len(reason) > 500:
        raise ValidationFailed({"reason": "Keep the reason under 500 characters."})
    if not await IssuingEntity.exists().where(IssuingEntity.id == issuing_entity_id):
        raise NotFound("issuing entity")
    who = f"{actor.type}:{actor.id}"[:64]
    now = datetime.now(UTC)
    async with transaction():
        await PeriodLock.insert(
            PeriodLock(
                issuing_entity=issuing_entity_id,
                period=period,
                locked=False,
                reason="",
                changed_by=who,
                changed_at=now,
            )
        ).on_conflict(action="DO NOTHING")
        row = await for_update(
            PeriodLock.select(PeriodLock.id, PeriodLock.locked).where(
                (PeriodLock.issuing_entity == issuing_entity_id) & (PeriodLock.period == period)
            )
        ).first()
        assert row is not None
        if row["locked"] == lock:
            state = "locked" if lock else "not locked"
            raise Conflict(f"the period {period} is already {state}")
        await PeriodLock.update(
            {
                PeriodLock.locked: lock,
                PeriodLock.reason: reason,
                PeriodLock.changed_by: who,
                PeriodLock.changed_at: now,
            }
        ).where(PeriodLock.id == row["id"])
        await record(
            AuditRecord(
                actor,
                "ledger.period_locked" if lock else "ledger.period_unlocked",
                "period_lock",
                row["id"],
                reason_code=reason[:64],
                data={"issuing_entity": issuing_entity_id, "period": period, "reason": reason},
            )
        )


async def lock_period(issuing_entity_id: int, period: str, reason: str, actor: Actor) -> None:
    await _set(issuing_entity_id, period, reason, actor, lock=True)


async def unlock_period(issuing_entity_id: int, period: str, reason: str, actor: Actor) -> None:
    await _set(issuing_entity_id, period, reason, actor, lock=False)


async def list_locks() -> list[dict[str, object]]:
    return await PeriodLock.select(
        PeriodLock.all_columns(),
        PeriodLock.issuing_entity.code.as_alias("entity_code"),
        PeriodLock.issuing_entity.name.as_alias("entity_name"),
    ).order_by(PeriodLock.period, ascending=False)
