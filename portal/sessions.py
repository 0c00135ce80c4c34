"""Server-side sessions in Redis.

The cookie holds only a random id. Each session expires after ``idle`` seconds without
a request and ``absolute`` seconds after sign-in, whichever comes first. A per-user
index lets a user list their sessions and sign the others out; ``rotate`` issues a new
id for the same session (at sign-in and on any privilege change).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

_PREFIX = "ll:session:"
_INDEX = "ll:user-sessions:"


@dataclass(frozen=True, slots=True)
class SessionData:
    sid: str
    kind: str  # "customer" or "staff"
    user_id: int
    name: str
    created_at: float
    ip: str = ""
    user_agent: str = ""


class SessionStore:
    def __init__(self, redis: Redis, idle_seconds: int, absolute_seconds: int) -> None:
        self.redis = redis
        self.idle = idle_seconds
        self.absolute = absolute_seconds

    async def create(self, kind: str, user_id: int, name: str, ip: str, user_agent: str) -> str:
        sid = secrets.token_urlsafe(32)
        data = SessionData(sid, kind, user_id, name, time.time(), ip, user_agent[:300])
        await self._save(data)
        return sid

    async def _save(self, data: SessionData) -> None:
        ttl = min(self.idle, max(1, int(data.created_at + self.absolute - time.time())))
        payload = {k: v for k, v in asdict(data).items() if k != "sid"}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(_PREFIX + data.sid, json.dumps(payload), ex=ttl)
            pipe.zadd(f"{_INDEX}{data.kind}:{data.user_id}", {data.sid: data.created_at})
            await pipe.execute()

    async def load(self, sid: str | None) -> SessionData | None:
        if not sid or len(sid) > 64:
            return None
        raw = await self.redis.get(_PREFIX + sid)
        if raw is None:
            return None
        data = SessionData(sid=sid, **json.loads(raw))
        remaining = data.created_at + self.absolute - time.time()
        if remaining <= 0:
            await self.delete(sid)
            return None
        await self.redis.expire(_PREFIX + sid, min(self.idle, int(remaining) + 1))
        return data

    async def delete(self, sid: str) -> None:
        raw = await self.redis.getdel(_PREFIX + sid)
        if raw is not None:
            info = json.loads(raw)
            await self.redis.zrem(f"{_INDEX}{info['kind']}:{info['user_id']}", sid)

    async def rotate(self, data: SessionData) -> str:
        """Give the session a fresh id; the old one stops working at once."""
        new_sid = secrets.token_urlsafe(32)
        await self.delete(data.sid)
        fields = asdict(data)
        fields["sid"] = new_sid
        await self._save(SessionData(**fields))
        return new_sid
