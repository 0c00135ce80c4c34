"""Job functions: thin wrappers that call core services. Every job is idempotent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from arq.connections import ArqRedis

from core.invoicing.aging import billing_account_ids, snapshot_account
from workers.retry import retrying

AGING_BATCH = 500


def aging_job_id(as_of: str, account_ids: list[int]) -> str:
    """Deterministic: the same day and batch always map to the same job id."""
    return f"aging:{as_of}:{account_ids[0]}-{account_ids[-1]}"


@retrying()
async def snapshot_aging_batch(ctx: dict[str, Any], account_ids: list[int], as_of: str) -> int:
    """Snapshot a batch of billing accounts; returns how many new snapshots were written."""
    day = date.fromisoformat(as_of)
    written = 0
    for account_id in account_ids:
        written += await snapshot_account(account_id, day)
    return written


async def enqueue_aging(redis: ArqRedis, as_of: date) -> list[str]:
    """Enqueue the day's aging batches; enqueueing twice is harmless (same job ids)."""
    ids = await billing_account_ids()
    job_ids = []
    for start in range(0, len(ids), AGING_BATCH):
        batch = ids[start : start + AGING_BATCH]
        job_id = aging_job_id(as_of.isoformat(), batch)
        await redis.enqueue_job("snapshot_aging_batch", batch, as_of.isoformat(), _job_id=job_id)
        job_ids.append(job_id)
    return job_ids


async def nightly_aging(ctx: dict[str, Any]) -> int:
    """Cron entry point: schedule today's (UTC) aging snapshots."""
    return len(await enqueue_aging(ctx["redis"], datetime.now(UTC).date()))
