"""Organization-scoped API keys for the usage API.

A key is ``ll_live_`` followed by 43 URL-safe random characters (256 bits). It is shown
once, at creation; only its SHA-256 hex digest is stored (``secret_hash``, unique) with
the first 8 characters as ``prefix`` for display. A key belongs to the root of a
customer group tree, so it can send usage for any billing account in that tree.
Rotation creates a new key and revokes the old one in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.audit.log import Actor, AuditRecord, record
from core.db import transaction
from core.errors import NotFound, ValidationFailed
from core.identity.tables import CustomerOrganization
from core.usage.tables import ApiKey

KEY_PREFIX = "ll_live_"
# last_used_at is refreshed at most this often (it is informational, not a lock).
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: int
    key: str  # the full key: shown once, never stored
    prefix: str
    organization_id: int


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def _root_of(organization_id: int) -> int:
    row = (
        await CustomerOrganization.select(CustomerOrganization.root_id)
        .where(CustomerOrganization.id == organization_id)
        .first()
    )
    if row is None:
        raise NotFound("organization")
    return int(row["root_id"] or organization_id)


async def _insert(root_id: int, name: str, actor: Actor, action: str) -> CreatedKey:
    key = _new_key()
    [row] = await ApiKey.insert(
        ApiKey(
            organization=root_id,
            name=name,
            prefix=key[:8],
            secret_hash=key_hash(key),
            created_at=datetime.now(UTC),
        )
    )
    created = CreatedKey(row["id"], key, key[:8], root_id)
    await record(
        AuditRecord(
            actor,
            action,
            "api_key",
            created.id,
            data={"organization_id": root_id, "name": name, "prefix": created.prefix},
        )
    )
    return created


async def create_key(organization_id: int, name: str, actor: Actor) -> CreatedKey:
    """A new key for the group ``organization_id`` belongs to (any node of the tree)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed({"name": "Give the key a name of 1 to 200 characters."})
    async with transaction():
        root_id = await _root_of(organization_id)
        return await _insert(root_id, name, actor, "api_key.create")


async def _active(key_id: int, organization_id: int) -> dict:
    if not 0 < key_id < 2**31:  # ids are PostgreSQL integers: anything else is not found
        raise NotFound("API key")
    row = (
        await ApiKey.select()
        .where(
            (ApiKey.id == key_id)
            & (ApiKey.organization == organization_id)
            & ApiKey.revoked_at.is_null()
        )
        .first()
    )
    if row is None:
        raise NotFound("API key")
    return row


async def revoke_key(key_id: int, organization_id: int, actor: Actor, reason: str = "") -> None:
    """Revoke an active key of the group (its root id); unknown or foreign → NotFound."""
    async with transaction():
        root_id = await _root_of(organization_id)
        await _active(key_id, root_id)
        await ApiKey.update({ApiKey.revoked_at: datetime.now(UTC)}).where(ApiKey.id == key_id)
        await record(
            AuditRecord(actor, "api_key.revoke", "api_key", key_id, reason_code=reason[:64])
        )


async def rotate_key(key_id: int, organization_id: int, actor: Actor) -> CreatedKey:
    """A new key with the same name; the old one is revoked in the same transaction."""
    async with transaction():
        root_id = await _root_of(organization_id)
        old = await _active(key_id, root_id)
        await ApiKey.update({ApiKey.revoked_at: datetime.now(UTC)}).where(ApiKey.id == key_id)
        created = await _insert(root_id, old["name"], actor, "api_key.create")
        await record(
            AuditRecord(
                actor, "api_key.rotate", "api_key", key_id, data={"replaced_by": created.id}
            )
        )
        return created


async def list_keys(organization_id: int) -> list[dict]:
    """Keys of the group (never the secret or its hash)."""
    root_id = await _root_of(organization_id)
    return (
        await ApiKey.select(
            ApiKey.id,
            ApiKey.name,
            ApiKey.prefix,
            ApiKey.created_at,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
        )
        .where(ApiKey.organization == root_id)
        .order_by(ApiKey.id)
    )


async def authenticate(key: str) -> int | None:
    """The root organization id of an active key, or None (unknown, revoked, malformed)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = (
        await ApiKey.select(ApiKey.id, ApiKey.organization, ApiKey.last_used_at)
        .where((ApiKey.secret_hash == key_hash(key)) & ApiKey.revoked_at.is_null())
        .first()
    )
    if row is None:
        return None
    now = datetime.now(UTC)
    if row["last_used_at"] is None or now - row["last_used_at"] > _TOUCH_EVERY:
        await ApiKey.update({ApiKey.last_used_at: now}).where(ApiKey.id == row["id"])
    return int(row["organization"])
