"""The idempotency-key store: replay, mismatch, in flight, takeover after a crash, scope
per organization, purge after 48 hours."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.idempotency import store as idem
from core.idempotency.tables import IdempotencyRecord


async def test_claims_replays_and_refusals(db) -> None:
    fp = idem.fingerprint({"a": 1})
    claims = await asyncio.gather(
        *(idem.claim(1, "k1", "api:x", fp) for _ in range(10)), return_exceptions=True
    )
    won = [c for c in claims if isinstance(c, idem.Claim)]
    assert len(won) == 1
    assert all(isinstance(c, idem.KeyInFlight) for c in claims if c not in won)
    await idem.complete(won[0].record_id, 201, b'{"id": 1}', "application/json")
    replay = await idem.claim(1, "k1", "api:x", fp)
    assert replay.replay == idem.StoredResponse(201, b'{"id": 1}', "application/json")
    with pytest.raises(idem.KeyReused):
        await idem.claim(1, "k1", "api:x", idem.fingerprint({"a": 2}))
    with pytest.raises(idem.KeyReused):
        await idem.claim(1, "k1", "api:other", fp)
    # Another organization's key of the same name is its own.
    assert (await idem.claim(2, "k1", "api:x", fp)).replay is None


async def test_abandoned_and_stale_claims_are_taken_over_and_resume(db) -> None:
    fp = idem.fingerprint({})
    first = await idem.claim(1, "k2", "api:x", fp)
    await idem.attach(first.record_id, 99)
    with pytest.raises(idem.KeyInFlight):
        await idem.claim(1, "k2", "api:x", fp)
    later = datetime.now(UTC) + idem.STALE_AFTER + timedelta(seconds=1)
    resumed = await idem.claim(1, "k2", "api:x", fp, now=later)
    assert (resumed.record_id, resumed.resource_id) == (first.record_id, 99)
    await idem.abandon(resumed.record_id)
    assert (await idem.claim(1, "k2", "api:x", fp)).resource_id == 99
    # A released claim (bad input, nothing created) frees the key.
    bad = await idem.claim(1, "k3", "api:x", fp)
    await idem.release(bad.record_id)
    assert (await idem.claim(1, "k3", "api:x", idem.fingerprint({"b": 1}))).replay is None


async def test_records_are_kept_24_hours_and_purged_after_48(db) -> None:
    fp = idem.fingerprint({})
    claim = await idem.claim(1, "old", "api:x", fp)
    await idem.complete(claim.record_id, 201, b"{}", "application/json")
    now = datetime.now(UTC)
    assert await idem.purge(now + timedelta(hours=24)) == 0
    assert (await idem.claim(1, "old", "api:x", fp)).replay is not None
    assert await idem.purge(now + timedelta(hours=49)) == 1
    assert await IdempotencyRecord.count() == 0
