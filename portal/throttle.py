"""Counting failed sign-in attempts in Redis (``request.app.state.redis``).

Per account (keyed by a hash of the normalized email, so unknown addresses behave
exactly like real ones) and per client address:

* ``consecutive``: failures since the last success, reset by a success or a lock;
* sliding windows (sorted sets of timestamps) for the account, the address and
  second-factor failures, over ``Policy.window_seconds``;
* a lock key with a TTL: while it exists, the account's sign-ins are refused
  without checking the password.

What the counts lead to is decided by ``core.identity.security.assess``.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from litestar.connection import ASGIConnection
from redis.asyncio import Redis

from core.identity.security import (
    POLICY,
    Assessment,
    FailureCounts,
    Policy,
    assess,
    ip_blocked,
    record_failures,
)
from core.identity.services import normalize_email
from portal.auth import actor_for, client_ip

_PREFIX = "ll:auth:"


def _account(email: str) -> str:
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, redis: Redis, policy: Policy = POLICY) -> None:
        self.redis = redis
        self.policy = policy

    def _keys(self, email: str) -> tuple[str, str, str, str]:
        account = _account(email)
        return (
            f"{_PREFIX}consecutive:{account}",
            f"{_PREFIX}lock:{account}",
            f"{_PREFIX}window:account:{account}",
            f"{_PREFIX}window:mfa:{account}",
        )

    def _ip_key(self, ip: str) -> str:
        return f"{_PREFIX}window:ip:{ip}"

    async def locked(self, email: str) -> bool:
        return bool(await self.redis.exists(self._keys(email)[1]))

    async def ip_refused(self, ip: str) -> bool:
        if not ip:
            return False
        since = time.time() - self.policy.window_seconds
        return ip_blocked(await self.redis.zcount(self._ip_key(ip), since, "+inf"), self.policy)

    async def failure(
        self, email: str, ip: str, *, mfa: bool = False, toward_lock: bool = True
    ) -> FailureCounts:
        """Count one failure; locks the account when the consecutive count reaches the
        policy's limit. ``toward_lock=False`` for attempts refused because already
        locked (counted in the windows, but they do not extend the lock)."""
        consecutive, lock, account_window, mfa_window = self._keys(email)
        now = time.time()
        since = now - self.policy.window_seconds
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        ttl = self.policy.window_seconds + 60
        windows = [account_window] + ([mfa_window] if mfa else [])
        if ip:
            windows.append(self._ip_key(ip))
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in windows:
                pipe.zadd(key, {member: now})
                pipe.zremrangebyscore(key, "-inf", since)
                pipe.zcard(key)
                pipe.expire(key, ttl)
            if toward_lock:
                pipe.incr(consecutive)
                pipe.expire(consecutive, 24 * 3600)
            results = await pipe.execute()
        counts = {key: int(results[i * 4 + 2]) for i, key in enumerate(windows)}
        streak = int(results[len(windows) * 4]) if toward_lock else 0
        if toward_lock and streak >= self.policy.lock_after:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(lock, "1", ex=self.policy.lock_seconds)
                pipe.delete(consecutive)
                await pipe.execute()
        return FailureCounts(
            consecutive=streak,
            account=counts[account_window],
            ip=counts.get(self._ip_key(ip), 0) if ip else 0,
            mfa=counts.get(mfa_window, 0) if mfa else 0,
            counted_toward_lock=toward_lock,
        )

    async def success(self, email: str) -> None:
        """A completed step (password, code): the consecutive count starts again."""
        await self.redis.delete(self._keys(email)[0])

    async def unlock(self, email: str) -> None:
        """After a password reset by email: the owner proved control of the account."""
        consecutive, lock, _, _ = self._keys(email)
        await self.redis.delete(consecutive, lock)

    async def allow_reset_mail(self, email: str, ip: str) -> bool:
        """At most 3 reset emails per address per hour and 20 per client address."""
        hour = int(time.time() // 3600)
        keys = [(f"{_PREFIX}reset:{_account(email)}:{hour}", 3)]
        if ip:
            keys.append((f"{_PREFIX}reset-ip:{ip}:{hour}", 20))
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, _ in keys:
                pipe.incr(key)
                pipe.expire(key, 3700)
            results = await pipe.execute()
        return all(int(results[i * 2]) <= limit for i, (_, limit) in enumerate(keys))


def throttle(connection: ASGIConnection) -> LoginThrottle:
    return LoginThrottle(connection.app.state.redis)


async def note_failure(
    connection: ASGIConnection, email: str, *, mfa: bool = False, toward_lock: bool = True
) -> Assessment:
    """Count a failed attempt and record what it leads to (lockout audit, flags)."""
    ip = client_ip(connection)
    counts = await throttle(connection).failure(email, ip, mfa=mfa, toward_lock=toward_lock)
    assessment = assess(counts, normalize_email(email), ip)
    await record_failures(email, assessment, actor_for(connection))
    return assessment
