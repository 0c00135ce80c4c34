"""Server-side sessions in Redis.

The cookie holds only a random id. Each session expires after ``idle`` seconds without
a request and ``absolute`` seconds after sign-in, whichever comes first. A per-user
index lets a user list their sessions and sign the others out; ``rotate`` issues a new
id for the same session (at sign-in, after MFA, and on any privilege change).

A session moves through stages: ``mfa`` (password accepted, second factor pending),
``enroll`` (staff who must set up MFA first) and ``full``. Assisted sessions carry the
support agent's identity beside the customer user's.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class SessionData:
    sid: str
    kind: str  # "customer" or "staff"
    user_id: int
    name: str
    created_at: float
    ip: str = ""
    user_agent: str = ""
    stage: str = "full"  # "mfa", "enroll" or "full"
    auth_method: str = "password"  # "password", "sso" or "assisted"
    reauth_at: float = 0.0  # when the user last proved a password or second factor
    last_seen: float = 0.0
    active_entity: int | None = None  # organization node chosen in the entity switcher
    assisted_id: int | None = None
    agent_id: int | None = None
    agent_name: str = ""
    access: str = "act"  # "act" or "view" (assisted view-only)
    return_sid: str = ""  # assisted: the agent's staff session, resumed when it ends

    @property
    def full(self) -> bool:
        return self.stage == "full"

    @property
    def assisted(self) -> bool:
        return self.assisted_id is not None

    def fresh_auth(self, within_seconds: int = 300) -> bool:
        """Re-authentication is recent enough for a sensitive change."""
        return time.time() - self.reauth_at <= within_seconds


class SessionStore:
    def __init__(
        self, redis: Redis, idle_seconds: int, absolute_seconds: int, namespace: str = "ll"
    ) -> None:
        """``namespace`` keeps deployments (or test runs) sharing one Redis apart."""
        self.redis = redis
        self._session = f"{namespace}:session:"
        self._users = f"{namespace}:user-sessions:"
        self.idle = idle_seconds
        self.absolute = absolute_seconds

    async def create(
        self, kind: str, user_id: int, name: str, ip: str, user_agent: str, **fields: Any
    ) -> SessionData:
        now = time.time()
        data = SessionData(
            sid=secrets.token_urlsafe(32),
            kind=kind,
            user_id=user_id,
            name=name,
            created_at=now,
            ip=ip,
            user_agent=user_agent[:300],
            reauth_at=now,
            last_seen=now,
            **fields,
        )
        await self._save(data)
        return data

    def _index(self, data: SessionData) -> str:
        return f"{self._users}{data.kind}:{data.user_id}"

    async def _save(self, data: SessionData) -> None:
        ttl = min(self.idle, max(1, int(data.created_at + self.absolute - time.time())))
        payload = {k: v for k, v in asdict(data).items() if k != "sid"}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._session + data.sid, json.dumps(payload), ex=ttl)
            pipe.zadd(self._index(data), {data.sid: data.created_at})
            pipe.expire(self._index(data), self.absolute)
            await pipe.execute()

    async def load(self, sid: str | None) -> SessionData | None:
        if not sid or len(sid) > 64:
            return None
        raw = await self.redis.get(self._session + sid)
        if raw is None:
            return None
        data = SessionData(sid=sid, **json.loads(raw))
        now = time.time()
        if data.created_at + self.absolute - now <= 0:
            await self.delete(sid)
            return None
        data = replace(data, last_seen=now)
        await self._save(data)  # slides the idle timeout
        return data

    async def update(self, data: SessionData, **changes: Any) -> SessionData:
        updated = replace(data, **changes)
        await self._save(updated)
        return updated

    async def delete(self, sid: str) -> None:
        raw = await self.redis.getdel(self._session + sid)
        if raw is not None:
            info = json.loads(raw)
            await self.redis.zrem(f"{self._users}{info['kind']}:{info['user_id']}", sid)

    async def rotate(self, data: SessionData, **changes: Any) -> SessionData:
        """Give the session a fresh id (the old one stops working at once)."""
        await self.delete(data.sid)
        rotated = replace(data, sid=secrets.token_urlsafe(32), **changes)
        await self._save(rotated)
        return rotated

    async def list_for(self, kind: str, user_id: int) -> list[SessionData]:
        """The user's live sessions, newest first (expired ids are pruned)."""
        index = f"{self._users}{kind}:{user_id}"
        sids = [
            s.decode() if isinstance(s, bytes) else s
            for s in await self.redis.zrevrange(index, 0, -1)
        ]
        result = []
        for sid in sids:
            raw = await self.redis.get(self._session + sid)
            if raw is None:
                await self.redis.zrem(index, sid)
                continue
            result.append(SessionData(sid=sid, **json.loads(raw)))
        return result

    async def delete_all_for(self, kind: str, user_id: int, keep: str | None = None) -> int:
        """Sign out every session of the user except ``keep``; returns how many ended."""
        ended = 0
        for session in await self.list_for(kind, user_id):
            if session.sid != keep:
                await self.delete(session.sid)
                ended += 1
        return ended
