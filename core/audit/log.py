"""Appending to and verifying the audit log (append-only: no update or delete path)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    ChainReport,
    canonical_data,
    event_hash,
    verify,
)
from core.audit.tables import AuditEvent
from core.db import advisory_lock, is_sqlite, transaction

# Arbitrary constant: the PostgreSQL advisory-lock key that serializes chain appends.
_CHAIN_LOCK_KEY = 0x4C4C_4155  # "LLAU"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a customer user, staff user, support agent or the system."""

    type: str
    id: str
    on_behalf_of: str = ""
    ip: str = ""
    user_agent: str = ""

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(type="system", id=name)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    actor: Actor
    action: str
    object_type: str = ""
    object_id: str | int = ""
    reason_code: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _fields(event: AuditRecord, now: datetime) -> dict[str, Any]:
    return {
        "occurred_at": now,
        "actor_type": event.actor.type,
        "actor_id": event.actor.id,
        "on_behalf_of": event.actor.on_behalf_of,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": str(event.object_id),
        "reason_code": event.reason_code,
        "ip": event.actor.ip[:64],
        "user_agent": event.actor.user_agent[:300],
        "data": canonical_data(event.data),
    }


def _chained(
    fields: Sequence[dict[str, Any]], prev_hash: str
) -> tuple[tuple[dict[str, Any], ...], str]:
    """The rows (fields + prev_hash + hash) chained from ``prev_hash``, and the last hash."""
    rows: list[dict[str, Any]] = []
    for f in fields:
        digest = event_hash(prev_hash, f)
        rows.append({**f, "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest
    return tuple(rows), prev_hash


async def _head() -> str:
    """The hash of the newest event (take the chain lock first)."""
    last = await AuditEvent.select(AuditEvent.hash).order_by(AuditEvent.id, ascending=False).first()
    return last["hash"] if last else GENESIS_HASH


async def _insert(rows: Sequence[dict[str, Any]]) -> None:
    if is_sqlite():
        # ids ascend in insertion order within one multi-row INSERT (the order
        # verify_chain walks); chunks keep each statement under the parameter limit.
        for start in range(0, len(rows), 200):
            await AuditEvent.insert(*[AuditEvent(**r) for r in rows[start : start + 200]])
    else:
        await _insert_ordered(rows)


async def record(event: AuditRecord) -> str:
    """Append one event inside the caller's transaction; returns its hash."""
    [digest] = await record_many([event])
    return digest


async def record_many(events: Sequence[AuditRecord]) -> list[str]:
    """Append many events in order inside the caller's transaction, chained exactly as
    ``record`` would chain them one by one (one lock, one read, one bulk insert)."""
    if not events:
        return []
    now = datetime.now(UTC)
    async with transaction():
        await advisory_lock(_CHAIN_LOCK_KEY)
        rows, _ = _chained([_fields(e, now) for e in events], await _head())
        await _insert(rows)
    return [r["hash"] for r in rows]


async def locked_head() -> str:
    """Take the chain lock for the rest of the caller's transaction and return the hash
    of the newest event: what ``prepare`` chains the next events from."""
    await advisory_lock(_CHAIN_LOCK_KEY)
    return await _head()


@dataclass(frozen=True, slots=True)
class PreparedEvents:
    """Events hashed ahead of their insert, chained from an expected head of the log
    (``prepare``): a bulk writer hashes batch k+1 while batch k is being written.
    ``append_prepared`` inserts them, re-chaining if the head turned out different."""

    fields: tuple[dict[str, Any], ...]
    expected_head: str | None
    rows: tuple[dict[str, Any], ...]
    last_hash: str | None  # what the head will be after the insert, if expected_head held


def prepare(events: Sequence[AuditRecord], expected_head: str | None) -> PreparedEvents:
    """Hash ``events`` as if the log's newest event had ``expected_head`` (None: unknown,
    hashed at insert time). Pure: no I/O."""
    fields = tuple(_fields(e, datetime.now(UTC)) for e in events)
    if expected_head is None:
        return PreparedEvents(fields, None, (), None)
    rows, last = _chained(fields, expected_head)
    return PreparedEvents(fields, expected_head, rows, last)


async def append_prepared(prepared: PreparedEvents) -> str | None:
    """Insert prepared events inside the caller's transaction (chain lock taken, head
    read); returns the new head, or None when there was nothing to insert."""
    if not prepared.fields:
        return None
    async with transaction():
        await advisory_lock(_CHAIN_LOCK_KEY)
        head = await _head()
        rows, last = (
            (prepared.rows, prepared.last_hash)
            if head == prepared.expected_head
            else _chained(prepared.fields, head)
        )
        await _insert(rows)
    return last


_BULK_COLUMNS = (
    ("occurred_at", "timestamptz"),
    ("actor_type", "text"),
    ("actor_id", "text"),
    ("on_behalf_of", "text"),
    ("action", "text"),
    ("object_type", "text"),
    ("object_id", "text"),
    ("reason_code", "text"),
    ("ip", "text"),
    ("user_agent", "text"),
    ("data", "json"),
    ("prev_hash", "text"),
    ("hash", "text"),
)


async def _insert_ordered(rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL: one INSERT … SELECT over typed arrays, ordered so ids follow the
    chain order."""
    names = [name for name, _ in _BULK_COLUMNS]
    arrays = [[row[name] for row in rows] for name in names]
    unnest = ", ".join(f"{{}}::{pg_type}[]" for _, pg_type in _BULK_COLUMNS)
    cols = ", ".join(names)
    await AuditEvent.raw(
        f"INSERT INTO audit_event ({cols}) SELECT {cols} FROM unnest({unnest}) "
        f"WITH ORDINALITY AS v({cols}, n) ORDER BY n",
        *arrays,
    )


async def verify_chain(batch: int = 5000) -> ChainReport:
    """Walk the whole log in id order, chunk by chunk, checking every link and hash."""
    columns = [AuditEvent.id, AuditEvent.prev_hash, AuditEvent.hash]
    columns += [getattr(AuditEvent, name) for name in HASHED_FIELDS]
    report = ChainReport(ok=True, checked=0)
    last_id = 0
    while True:
        rows = (
            await AuditEvent.select(*columns)
            .where(AuditEvent.id > last_id)
            .order_by(AuditEvent.id)
            .limit(batch)
        )
        if not rows:
            return report
        for row in rows:
            if not isinstance(row["data"], str):  # some drivers decode JSON
                row["data"] = canonical_data(row["data"])
            row["occurred_at"] = row["occurred_at"].astimezone(UTC)
        report = verify(rows, report.last_hash, report.checked)
        if not report.ok:
            return report
        last_id = rows[-1]["id"]
