"""Server-side sessions against the real Redis (TEST_REDIS_URL): idle and absolute
expiry with timeouts of a second or two (the app's settings are in minutes and hours,
too coarse to wait for), rotation, and signing out other sessions."""

from __future__ import annotations

import asyncio
import random

from portal.sessions import SessionStore
from tests.integration.conftest_auth import redis  # noqa: F401 - a fixture


def _user_id() -> int:
    # Far above any id a test database hands out, so no real index is touched.
    return random.randrange(10**12, 10**13)


async def test_idle_timeout(redis) -> None:  # noqa: F811
    store = SessionStore(redis, idle_seconds=1, absolute_seconds=60)
    session = await store.create("customer", _user_id(), "Idle", "10.0.0.1", "pytest")
    await asyncio.sleep(0.6)
    assert await store.load(session.sid) is not None  # a request slides the idle timeout
    await asyncio.sleep(0.6)
    assert await store.load(session.sid) is not None
    await asyncio.sleep(1.5)  # no request for longer than the idle timeout
    assert await store.load(session.sid) is None
    assert await store.list_for("customer", session.user_id) == []


async def test_absolute_timeout_even_when_active(redis) -> None:  # noqa: F811
    store = SessionStore(redis, idle_seconds=1, absolute_seconds=2)
    session = await store.create("staff", _user_id(), "Busy", "10.0.0.2", "pytest")
    for _ in range(3):  # active all along: every 0.6 s, inside the idle timeout
        await asyncio.sleep(0.6)
        assert await store.load(session.sid) is not None
    await asyncio.sleep(0.5)  # 2.3 s after sign-in
    assert await store.load(session.sid) is None


async def test_rotation_kills_the_old_id_and_keeps_the_data(redis) -> None:  # noqa: F811
    store = SessionStore(redis, idle_seconds=60, absolute_seconds=600)
    user_id = _user_id()
    session = await store.create("customer", user_id, "Rotating", "10.0.0.3", "pytest", stage="mfa")
    rotated = await store.rotate(session, stage="full")
    assert rotated.sid != session.sid
    assert await store.load(session.sid) is None
    loaded = await store.load(rotated.sid)
    assert loaded is not None
    assert (loaded.stage, loaded.user_id, loaded.created_at) == (
        "full",
        user_id,
        session.created_at,
    )
    assert [s.sid for s in await store.list_for("customer", user_id)] == [rotated.sid]


async def test_sign_out_other_sessions_keeps_this_one(redis) -> None:  # noqa: F811
    store = SessionStore(redis, idle_seconds=60, absolute_seconds=600)
    user_id = _user_id()
    sessions = [
        await store.create("customer", user_id, "Many", f"10.0.1.{i}", "pytest") for i in range(3)
    ]
    other_user = await store.create("customer", _user_id(), "Other", "10.0.2.1", "pytest")
    assert await store.delete_all_for("customer", user_id, keep=sessions[0].sid) == 2
    assert [s.sid for s in await store.list_for("customer", user_id)] == [sessions[0].sid]
    assert await store.load(other_user.sid) is not None
    await store.delete_all_for("customer", user_id)
    await store.delete(other_user.sid)
