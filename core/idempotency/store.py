"""The idempotency-key store behind every mutating API call and portal pay action.

Rules (DESIGN.md): same key + same payload → the stored response, byte for byte; same key
+ another payload (or another endpoint) → refused (422); same key while the first request
is still running → refused (409). Keys are scoped per customer group (the root
organization) and kept at least 24 hours; ``purge`` deletes records older than 48 hours
(a worker cron runs it hourly).

Flow: ``claim`` (its own short transaction: exactly one of many concurrent requests
inserts the record, thanks to the unique index on (organization, key)); the caller does
the work, linking what it created with ``attach`` inside its own transaction; then
``complete`` stores the response. A request that fails with a user error calls
``release`` (the record disappears, so a corrected retry with the same key runs, as
Stripe does). A request that dies half-way leaves the record in flight; ``abandon``
(called on unexpected errors) or ``stale_after`` lets a later retry take it over and
resume the resource it had already created, never a second one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.db import for_update, transaction
from core.errors import Conflict, ValidationFailed
from core.idempotency.tables import IdempotencyRecord

RETENTION = timedelta(hours=48)  # purge after; the promise is "at least 24 h"
STALE_AFTER = timedelta(minutes=2)  # an in-flight record older than this was abandoned
MAX_KEY_LENGTH = 255


class KeyInFlight(Conflict):
    """The first request with this key is still running (HTTP 409)."""


class KeyReused(ValidationFailed):
    """The key was used for another request (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: int
    replay: StoredResponse | None = None  # set: answer this, do nothing else
    resource_id: int | None = None  # set: an earlier try created this; resume it


def fingerprint(payload: Any) -> str:
    """SHA-256 of the payload as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_key(key: str | None) -> str:
    """A usable key: 1 to 255 printable ASCII characters."""
    key = (key or "").strip()
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ValidationFailed(
            {"idempotency_key": "Send an Idempotency-Key of 1 to 255 printable characters."}
        )
    return key


async def claim(
    organization_id: int,
    key: str,
    endpoint: str,
    request_fingerprint: str,
    *,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> Claim:
    key = check_key(key)
    now = now or datetime.now(UTC)
    async with transaction():
        inserted = await (
            IdempotencyRecord.insert(
                IdempotencyRecord(
                    organization=organization_id,
                    key=key,
                    endpoint=endpoint,
                    fingerprint=request_fingerprint,
                    state="in_flight",
                    created_at=now,
                    locked_at=now,
                )
            )
            .on_conflict(
                target=(IdempotencyRecord.organization, IdempotencyRecord.key),
                action="DO NOTHING",
            )
            .returning(IdempotencyRecord.id)
        )
        if inserted:
            return Claim(record_id=int(inserted[0]["id"]))
        row = await for_update(
            IdempotencyRecord.select().where(
                (IdempotencyRecord.organization == organization_id) & (IdempotencyRecord.key == key)
            )
        ).first()
        if row is None:  # purged between the insert and the read: extremely unlikely
            raise KeyInFlight("This Idempotency-Key is being processed; retry shortly.")
        if row["endpoint"] != endpoint or row["fingerprint"] != request_fingerprint:
            raise KeyReused(
                {
                    "idempotency_key": "This Idempotency-Key was already used for a different "
                    "request. Use a new key for a new request."
                }
            )
        if row["state"] == "done":
            return Claim(
                record_id=row["id"],
                replay=StoredResponse(
                    row["response_status"], row["response_body"].encode(), row["media_type"]
                ),
                resource_id=row["resource_id"],
            )
        locked_at = row["locked_at"]
        if locked_at is not None and locked_at > now - stale_after:
            raise KeyInFlight(
                "A request with this Idempotency-Key is still being processed; retry shortly."
            )
        # Abandoned by a request that failed or died: take it over (and resume its work).
        await IdempotencyRecord.update({IdempotencyRecord.locked_at: now}).where(
            IdempotencyRecord.id == row["id"]
        )
        return Claim(record_id=row["id"], resource_id=row["resource_id"])


async def attach(record_id: int, resource_id: int) -> None:
    """Link what the request created; call it inside the transaction that created it."""
    await IdempotencyRecord.update({IdempotencyRecord.resource_id: resource_id}).where(
        IdempotencyRecord.id == record_id
    )


async def complete(record_id: int, status: int, body: bytes, media_type: str) -> None:
    await IdempotencyRecord.update(
        {
            IdempotencyRecord.state: "done",
            IdempotencyRecord.response_status: status,
            IdempotencyRecord.response_body: body.decode(),
            IdempotencyRecord.media_type: media_type,
            IdempotencyRecord.completed_at: datetime.now(UTC),
        }
    ).where(IdempotencyRecord.id == record_id)


async def release(record_id: int) -> None:
    """Forget a request that changed nothing (bad input): the key may be used again."""
    await IdempotencyRecord.delete().where(
        (IdempotencyRecord.id == record_id) & (IdempotencyRecord.resource_id.is_null())
    )


async def abandon(record_id: int) -> None:
    """The request failed unexpectedly: let the next retry take over at once."""
    await IdempotencyRecord.update({IdempotencyRecord.locked_at: None}).where(
        (IdempotencyRecord.id == record_id) & (IdempotencyRecord.state == "in_flight")
    )


async def purge(now: datetime | None = None, older_than: timedelta = RETENTION) -> int:
    """Delete records older than ``older_than`` (48 h by default); returns how many."""
    cutoff = (now or datetime.now(UTC)) - older_than
    rows = (
        await IdempotencyRecord.delete()
        .where(IdempotencyRecord.created_at < cutoff)
        .returning(IdempotencyRecord.id)
    )
    return len(rows)
