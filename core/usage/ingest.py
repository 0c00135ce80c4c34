"""Usage ingestion: validate a batch, keep the good events, report each one.

Pure part (``validate_batch``): plain values in, plain values out, no I/O. Rules per
event:

* ``id``: string of 1-128 characters, the client's idempotency id (unique per customer
  group: a repeat, in the batch or across batches, is reported ``duplicate``);
* ``billing_account``: a billing account code of the key's group (an unknown code and a
  code of another group get the same message: nothing leaks about other tenants); or
  ``subscription``: the id of a subscription of the group (string or integer), whose
  billing account the event is recorded on (both given: they must agree);
* ``metric``: ``^[a-z][a-z0-9_.]{0,63}$``;
* ``quantity``: >= 0, at most 14 integer and 6 fractional digits, given as a decimal
  string (``"12.5"``) or a JSON number. JSON numbers are never read as binary floats:
  the API decodes them with msgspec's ``float_hook=Decimal``, i.e. from their literal
  text, so ``0.1`` is exactly ``Decimal("0.1")``. Exponents, NaN, Infinity and booleans
  are refused;
* ``timestamp``: RFC 3339 with a timezone (``Z`` or an offset), at most 5 minutes in
  the future;
* ``properties``: optional JSON object, at most 4 KB encoded.

Storing (``store_events``): the accepted events of one batch are written in ONE
transaction with ``INSERT … ON CONFLICT (organization, event_id) DO NOTHING RETURNING
event_id``: all good events commit together or none does. On PostgreSQL the rows travel
as arrays through ``unnest`` in a single statement. Measured on this machine for
10,000 rows: ~115-125 ms, against ~105-120 ms for COPY into a temporary staging table +
INSERT … SELECT … ON CONFLICT (which pays for creating the temporary table in every
transaction): no clear winner, so the simpler single statement stays. Rows are sorted by
id so that concurrent
overlapping batches lock in the same order and cannot deadlock. On SQLite (writers
serialized) the existing ids are read and the rest inserted with ``executemany``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from core.db import engine, is_sqlite, transaction

MAX_EVENTS = 10_000
MAX_PROPERTIES_BYTES = 4096
MAX_FUTURE = timedelta(minutes=5)
METRIC_RE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
QUANTITY_RE = re.compile(r"\d{1,14}(\.\d{1,6})?")
_MAX_QUANTITY = Decimal("99999999999999.999999")

UNKNOWN_ACCOUNT = "unknown billing account"
UNKNOWN_SUBSCRIPTION = "unknown subscription"
SUBSCRIPTION_MISMATCH = "billing_account does not match the subscription's billing account"

_encode = msgspec.json.Encoder(decimal_format="number").encode


@dataclass(frozen=True, slots=True)
class GoodEvent:
    index: int
    event_id: str
    account_code: str
    metric: str
    quantity: Decimal
    occurred_at: datetime
    properties: str  # JSON text


@dataclass(slots=True)
class Validated:
    good: list[GoodEvent]
    # index -> (event id or None, error) for rejected events
    rejected: dict[int, tuple[str | None, str]]
    # index -> event id, for repeats of an id earlier in the same batch
    repeats: dict[int, str]


def parse_quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) if 0 <= value <= _MAX_QUANTITY else None
    if isinstance(value, str):
        return Decimal(value) if QUANTITY_RE.fullmatch(value) else None
    if isinstance(value, Decimal):  # a JSON number with a fraction, read from its text
        if not value.is_finite() or value < 0 or value > _MAX_QUANTITY:
            return None
        exponent = value.as_tuple().exponent
        if not isinstance(exponent, int) or not -6 <= exponent <= 0:  # 1e3, 0.1234567
            return None
        return value
    return None  # a binary float never gets here from the API; refuse it anyway


def parse_timestamp(value: Any, now: datetime) -> datetime | str:
    if not isinstance(value, str) or not 20 <= len(value) <= 40 or value[10] not in "Tt ":
        return "timestamp must be an RFC 3339 date-time with a timezone"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return "timestamp must be an RFC 3339 date-time with a timezone"
    if at.tzinfo is None:
        return "timestamp must include a timezone (Z or an offset)"
    if at - now > MAX_FUTURE:
        return "timestamp is more than 5 minutes in the future"
    return at


def subscription_key(value: Any) -> str | None:
    """A subscription reference as given (``"42"`` or ``42``), or None if malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return str(int(value))
    return None


def validate_event(
    index: int,
    raw: Any,
    now: datetime,
    accounts: Mapping[str, int] | None = None,
    subscriptions: Mapping[str, str] | None = None,
) -> GoodEvent | tuple[str | None, str]:
    """One event: a ``GoodEvent`` or (its id if readable, the first error).
    ``subscriptions`` maps the group's subscription ids (as text) to account codes."""
    if not isinstance(raw, dict):
        return None, "event must be an object"
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
        return None, "id must be a string of 1 to 128 characters"
    code = raw.get("billing_account")
    if raw.get("subscription") is not None:
        key = subscription_key(raw["subscription"])
        if key is None:
            return event_id, "subscription must be a subscription id"
        owner = (subscriptions or {}).get(key)
        if owner is None:
            return event_id, UNKNOWN_SUBSCRIPTION
        if code is not None and code != owner:
            return event_id, SUBSCRIPTION_MISMATCH
        code = owner
    if not isinstance(code, str) or not code:
        return event_id, "billing_account or subscription is required"
    if accounts is not None and code not in accounts:
        return event_id, UNKNOWN_ACCOUNT
    metric = raw.get("metric")
    if not isinstance(metric, str) or METRIC_RE.fullmatch(metric) is None:
        return event_id, "metric must match ^[a-z][a-z0-9_.]{0,63}$"
    quantity = parse_quantity(raw.get("quantity"))
    if quantity is None:
        return event_id, (
            "quantity must be a non-negative decimal (string or JSON number) with at most"
            " 14 integer and 6 fractional digits"
        )
    at = parse_timestamp(raw.get("timestamp"), now)
    if isinstance(at, str):
        return event_id, at
    properties = raw.get("properties")
    if properties is None:
        text = "{}"
    elif not isinstance(properties, dict):
        return event_id, "properties must be an object"
    else:
        text = _encode(properties).decode()
        if len(text.encode()) > MAX_PROPERTIES_BYTES:
            return event_id, "properties must be at most 4 KB"
    return GoodEvent(index, event_id, code, metric, quantity, at, text)


def validate_batch(
    events: Sequence[Any],
    now: datetime,
    accounts: Mapping[str, int] | None = None,
    subscriptions: Mapping[str, str] | None = None,
) -> Validated:
    """Every event of a batch; a repeated id within the batch is a ``repeat`` of the
    first valid occurrence (reported ``duplicate``). ``accounts`` (code → id) is the
    key's group; None skips the account check (pure use)."""
    out = Validated([], {}, {})
    seen: set[str] = set()
    for index, raw in enumerate(events):
        result = validate_event(index, raw, now, accounts, subscriptions)
        if isinstance(result, GoodEvent):
            if result.event_id in seen:
                out.repeats[index] = result.event_id
            else:
                seen.add(result.event_id)
                out.good.append(result)
        else:
            out.rejected[index] = result
    return out


def account_codes(events: Sequence[Any]) -> set[str]:
    return {
        e["billing_account"]
        for e in events
        if isinstance(e, dict) and isinstance(e.get("billing_account"), str)
    }


# ----------------------------------------------------------------------- storing


@dataclass(frozen=True, slots=True)
class EventResult:
    id: str | None
    status: str  # accepted | duplicate | rejected
    error: str | None = None


@dataclass(frozen=True, slots=True)
class IngestReport:
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


async def _accounts_of(organization_id: int, codes: set[str]) -> dict[str, int]:
    if not codes:
        return {}
    from core.identity.tables import BillingAccount, CustomerOrganization

    rows = await BillingAccount.select(BillingAccount.id, BillingAccount.code).where(
        BillingAccount.code.is_in(list(codes))
        & BillingAccount.organization.is_in(
            CustomerOrganization.select(CustomerOrganization.id).where(
                CustomerOrganization.root_id == organization_id
            )
        )
    )
    return {r["code"]: r["id"] for r in rows}


async def _subscriptions_of(organization_id: int, events: Sequence[Any]) -> dict[str, str]:
    """Subscription id (as text) → billing account code, for the group's subscriptions
    referenced by ``events``."""
    keys = {
        key
        for e in events
        if isinstance(e, dict) and (key := subscription_key(e.get("subscription"))) is not None
    }
    ids = [int(k) for k in keys if int(k) <= 2**31 - 1]
    if not ids:
        return {}
    from core.billing.tables import Subscription
    from core.identity.tables import CustomerOrganization

    rows = await Subscription.select(
        Subscription.id, Subscription.billing_account.code.as_alias("code")
    ).where(
        Subscription.id.is_in(ids)
        & Subscription.billing_account.organization.is_in(
            CustomerOrganization.select(CustomerOrganization.id).where(
                CustomerOrganization.root_id == organization_id
            )
        )
    )
    return {str(r["id"]): r["code"] for r in rows}


_PG_INSERT = """
INSERT INTO usage_event
    (organization, billing_account, event_id, metric, quantity, occurred_at, properties,
     received_at)
SELECT $1, a, e, m, q, t, p::json, $8
FROM unnest($2::int[], $3::varchar[], $4::varchar[], $5::numeric[], $6::timestamptz[],
            $7::text[]) AS u(a, e, m, q, t, p)
ORDER BY e
ON CONFLICT (organization, event_id) DO NOTHING
RETURNING event_id
"""

_DEADLOCK_RETRIES = 3


async def _store_pg(organization_id: int, rows: list[tuple[Any, ...]], now: datetime) -> set[str]:
    import asyncpg

    db: Any = engine()
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(6)]
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            if db.pool is not None:
                async with db.pool.acquire() as conn, conn.transaction():
                    found = await conn.fetch(_PG_INSERT, organization_id, *columns, now)
            else:
                conn = await db.get_new_connection()
                try:
                    async with conn.transaction():
                        found = await conn.fetch(_PG_INSERT, organization_id, *columns, now)
                finally:
                    await conn.close()
            return {r[0] for r in found}
        except asyncpg.exceptions.DeadlockDetectedError:
            if attempt == _DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def _store_sqlite(
    organization_id: int, rows: list[tuple[Any, ...]], now: datetime
) -> set[str]:
    db: Any = engine()
    async with transaction():  # BEGIN IMMEDIATE: the write lock is ours until commit
        conn = db.current_transaction.get().connection
        ids = [r[1] for r in rows]
        existing: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            async with conn.execute(
                "SELECT event_id FROM usage_event"
                f" WHERE organization = ? AND event_id IN ({marks})",
                [organization_id, *chunk],
            ) as cursor:
                existing.update(r["event_id"] for r in await cursor.fetchall())
        fresh = [r for r in rows if r[1] not in existing]
        await conn.executemany(
            "INSERT OR IGNORE INTO usage_event (organization, billing_account, event_id, metric,"
            " quantity, occurred_at, properties, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(organization_id, a, e, m, str(q), t, p, now) for a, e, m, q, t, p in fresh],
        )
    return {r[1] for r in fresh}


async def ingest(organization_id: int, events: Sequence[Any]) -> IngestReport:
    """Validate ``events`` for the group ``organization_id`` (a root id), store the good
    ones in one transaction, and report every event in input order."""
    if len(events) > MAX_EVENTS:
        raise ValueError(f"at most {MAX_EVENTS} events per batch")
    now = datetime.now(UTC)
    subscriptions = await _subscriptions_of(organization_id, events)
    accounts = await _accounts_of(
        organization_id, account_codes(events) | set(subscriptions.values())
    )
    checked = validate_batch(events, now, accounts, subscriptions)
    rows = sorted(
        (
            (
                accounts[g.account_code],
                g.event_id,
                g.metric,
                g.quantity,
                g.occurred_at,
                g.properties,
            )
            for g in checked.good
        ),
        key=lambda r: r[1],
    )
    if not rows:
        inserted: set[str] = set()
    elif is_sqlite():
        inserted = await _store_sqlite(organization_id, rows, now)
    else:
        inserted = await _store_pg(organization_id, rows, now)
    results: list[EventResult] = [EventResult(None, "rejected")] * len(events)
    accepted = duplicates = 0
    for g in checked.good:
        if g.event_id in inserted:
            results[g.index] = EventResult(g.event_id, "accepted")
            accepted += 1
        else:
            results[g.index] = EventResult(g.event_id, "duplicate")
            duplicates += 1
    for index, event_id in checked.repeats.items():
        results[index] = EventResult(event_id, "duplicate")
        duplicates += 1
    for index, (event_id, error) in checked.rejected.items():
        results[index] = EventResult(event_id, "rejected", error)
    return IngestReport(accepted, duplicates, len(checked.rejected), results)
