"""Stripe's idempotency layer for POST requests.

* The first request with a key reserves it; its response is saved once the endpoint has
  begun executing (success, card errors, state errors; not validation errors).
* Same key, same endpoint and same parameters → the saved response, replayed byte for byte
  with ``Idempotent-Replayed: true``.
* Same key with other parameters or another endpoint → 400 ``idempotency_error``.
* Same key while the first request is still executing → 409 ``idempotency_error``
  (code ``idempotency_key_in_use``), as Stripe answers; nothing is saved, retrying is safe.
* Keys are scoped per API key and pruned once older than 24 hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stripe_double.errors import StripeError

TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255


@dataclass
class SavedResponse:
    status: int
    body: bytes
    request_id: str


@dataclass
class Record:
    method: str
    path: str
    fingerprint: str
    created: float
    request_id: str
    response: SavedResponse | None = None


@dataclass
class KeyStats:
    executions: int = 0
    replays: int = 0
    conflicts: int = 0
    mismatches: int = 0


@dataclass
class IdempotencyStore:
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    stats: dict[str, KeyStats] = field(default_factory=dict)

    def begin(
        self,
        api_key: str,
        key: str,
        method: str,
        path: str,
        params: dict[str, Any],
        now: float,
        request_id: str,
    ) -> Record:
        """Reserve the key (returns a record without response) or return the saved one."""
        if len(key) > MAX_KEY_LENGTH:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Idempotency keys can be at most {MAX_KEY_LENGTH} characters long.",
                param="Idempotency-Key",
                saved=False,
            )
        self.prune(now)
        stats = self.stats.setdefault(key, KeyStats())
        fingerprint = json.dumps(params, sort_keys=True, separators=(",", ":"))
        record = self.records.get((api_key, key))
        if record is None:
            record = Record(method, path, fingerprint, now, request_id)
            self.records[(api_key, key)] = record
            stats.executions += 1
            return record
        if (record.method, record.path) != (method, path):
            stats.mismatches += 1
            raise _idempotency_error(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were "
                f"first used for ('{record.method} {record.path}'). Try using a key other than "
                f"'{key}' if you meant to execute a different request.",
            )
        if record.fingerprint != fingerprint:
            stats.mismatches += 1
            raise _idempotency_error(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
            )
        if record.response is None:
            stats.conflicts += 1
            raise _idempotency_error(
                409,
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still going "
                f"through): {key}. Please try again later.",
                code="idempotency_key_in_use",
            )
        stats.replays += 1
        return record

    def finish(self, api_key: str, key: str, response: SavedResponse | None) -> None:
        """Save the response, or release the key when nothing is to be saved."""
        if response is None:
            self.records.pop((api_key, key), None)
            return
        record = self.records.get((api_key, key))
        if record is not None:
            record.response = response

    def prune(self, now: float) -> None:
        expired = [k for k, r in self.records.items() if r.created <= now - TTL_SECONDS]
        for k in expired:
            del self.records[k]


def _idempotency_error(status: int, message: str, code: str | None = None) -> StripeError:
    return StripeError(status, "idempotency_error", message, code=code, saved=False)
