"""The append-only, hash-chained audit log."""

from __future__ import annotations

from piccolo.columns import JSON, Timestamptz, Varchar
from piccolo.table import Table


class AuditEvent(Table, tablename="audit_event"):
    occurred_at = Timestamptz()
    actor_type = Varchar(length=16)  # customer, staff, agent, system
    actor_id = Varchar(length=64)
    on_behalf_of = Varchar(length=64, default="")
    action = Varchar(length=64, index=True)
    object_type = Varchar(length=32, default="")
    object_id = Varchar(length=64, default="")
    reason_code = Varchar(length=64, default="")
    ip = Varchar(length=64, default="")
    user_agent = Varchar(length=300, default="")
    data = JSON(default="{}")
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64, unique=True)
