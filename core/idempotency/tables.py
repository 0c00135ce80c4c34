"""Idempotency keys of mutating API calls and portal actions. tables."""

from __future__ import annotations

from piccolo.columns import BigInt, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class IdempotencyRecord(Table, tablename="idempotency_record"):
    """One ``Idempotency-Key`` of one customer group (root organization): the request's
    fingerprint, whether it is still running, and the response to replay byte for byte.
    Unique per (organization, key); kept at least 24 h (purged after 48 h)."""

    organization = BigInt(index=True)  # root of the customer group: the key's scope
    key = Varchar(length=255)
    endpoint = Varchar(length=64)
    fingerprint = Varchar(length=64)
    state = Varchar(length=16, default="in_flight")  # in_flight | done
    # What the request made (e.g. a payment attempt id): a retry after a crash resumes it.
    resource_id = BigInt(null=True, default=None)
    response_status = Integer(null=True, default=None)
    response_body = Text(default="")
    media_type = Varchar(length=100, default="")
    created_at = Timestamptz(index=True)
    locked_at = Timestamptz(null=True, default=None)  # None while in flight: abandoned
    completed_at = Timestamptz(null=True, default=None)
