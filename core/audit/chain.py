"""Pure hash-chain rules for the audit log.

Each event's hash is SHA-256 over the previous event's hash and a canonical JSON form
of the event's own fields. Changing any stored field, or removing a row, breaks the
link to the following row, which ``verify`` reports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64

HASHED_FIELDS: tuple[str, ...] = (
    "occurred_at",
    "actor_type",
    "actor_id",
    "on_behalf_of",
    "action",
    "object_type",
    "object_id",
    "reason_code",
    "ip",
    "user_agent",
    "data",
)


def canonical_data(data: Mapping[str, Any] | None) -> str:
    return json.dumps(data or {}, sort_keys=True, separators=(",", ":"), default=str)


def _field_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return "" if value is None else str(value)


def event_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    payload = json.dumps(
        [prev_hash, *(_field_text(fields.get(name)) for name in HASHED_FIELDS)],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    checked: int
    last_hash: str = GENESIS_HASH
    first_bad_id: int | None = None
    problem: str = ""


def verify(
    rows: Iterable[Mapping[str, Any]], previous: str = GENESIS_HASH, checked: int = 0
) -> ChainReport:
    """Check rows (in id order) link up and each hash matches its content.

    ``previous`` and ``checked`` let a caller verify a long log chunk by chunk.
    """
    for row in rows:
        if row["prev_hash"] != previous:
            return ChainReport(False, checked, previous, row["id"], "link to previous event broken")
        if event_hash(previous, row) != row["hash"]:
            return ChainReport(
                False, checked, previous, row["id"], "content does not match its hash"
            )
        previous = row["hash"]
        checked += 1
    return ChainReport(True, checked, previous)
