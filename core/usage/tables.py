"""Usage tables: API keys (hashed, organization-scoped) and raw usage events.

``usage_event`` carries a UNIQUE index on ``(organization, event_id)`` (created in a raw
migration, both engines): the client-supplied id deduplicates events per customer group.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    BigInt,
    BigSerial,
    ForeignKey,
    Numeric,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.table import Table

from core.identity.tables import BillingAccount, CustomerOrganization


class ApiKey(Table, tablename="api_key"):
    """An API key of a customer group (its root organization). Only the SHA-256 hex of
    the full key is stored; ``prefix`` (first 8 characters) identifies it in lists."""

    organization = ForeignKey(
        CustomerOrganization, index=True, null=False, on_delete=OnDelete.restrict
    )
    name = Varchar(length=200)
    prefix = Varchar(length=8)
    secret_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)


class UsageEvent(Table, tablename="usage_event"):
    """One metered event, as received. ``organization`` is the root organization id of
    the key that sent it (the dedup scope); ``event_id`` is the client's id."""

    id = BigSerial(primary_key=True)
    organization = BigInt()
    billing_account = ForeignKey(
        BillingAccount, index=True, null=False, on_delete=OnDelete.restrict
    )
    event_id = Varchar(length=128)
    metric = Varchar(length=64)
    quantity = Numeric(digits=(20, 6))
    occurred_at = Timestamptz()
    properties = JSON(default="{}")
    received_at = Timestamptz()
