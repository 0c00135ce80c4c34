"""Jobs run through a real arq worker (burst mode) against the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import Worker, func

from core.invoicing.services import create_draft, finalize
from core.invoicing.tables import AgingSnapshot
from core.operations.failures import backoff_seconds
from core.operations.tables import JobFailure
from tests.conftest import TEST_REDIS_URL
from tests.integration.factories import SYSTEM, billing_account, lines
from workers.jobs import enqueue_aging, snapshot_aging_batch
from workers.retry import retrying
from workers.settings import redis_settings


@pytest.fixture
async def queue() -> AsyncIterator[tuple[ArqRedis, str]]:
    name = f"test:queue:{uuid.uuid4().hex}"
    pool = await create_pool(redis_settings(TEST_REDIS_URL), default_queue_name=name)
    yield pool, name
    await pool.aclose()


def worker(pool: ArqRedis, queue_name: str, functions: list[Any], max_tries: int = 5) -> Worker:
    return Worker(
        functions=functions,
        redis_pool=pool,
        queue_name=queue_name,
        burst=True,
        max_tries=max_tries,
        handle_signals=False,
        poll_delay=0.01,
        keep_result=60,
    )


async def test_aging_snapshots_once_per_account_and_day(db, queue) -> None:
    pool, name = queue
    accounts = [await billing_account("EUR", code="A-1")]
    inv = await create_draft(accounts[0], lines("100.00", rate="0"), SYSTEM)
    # arq job ids are global in Redis and deterministic per day: pick a year no other
    # recent run used, so a run right after another is not refused as a duplicate.
    year = 2100 + uuid.uuid4().int % 5000
    await finalize(inv, SYSTEM, issue_date=date(year, 9, 1))  # due 15 September
    as_of = date(year, 11, 1)  # 47 days past due

    first = await enqueue_aging(pool, as_of)
    second = await enqueue_aging(pool, as_of)  # same ids: arq refuses the duplicate
    assert first == second
    w = worker(pool, name, [snapshot_aging_batch])
    await w.main()
    assert w.jobs_complete == 1
    assert w.jobs_failed == 0
    snap = await AgingSnapshot.select().where(AgingSnapshot.as_of == as_of).first()
    assert snap["days_31_60_minor"] == 10000  # 47 days past due
    assert snap["total_minor"] == 10000

    # A rerun of the job for the same day writes nothing new.
    job = await pool.enqueue_job("snapshot_aging_batch", accounts, as_of.isoformat())
    await worker(pool, name, [snapshot_aging_batch]).main()
    assert await job.result(timeout=5) == 0
    assert await AgingSnapshot.count() == 1


calls: dict[str, int] = {}


@retrying(max_tries=3, base_delay=0.01)
async def flaky(ctx: dict[str, Any], key: str, fail_times: int) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= fail_times:
        raise ConnectionError(f"database unreachable (try {calls[key]})")
    return f"done after {calls[key]}"


async def test_transient_failures_are_retried_with_backoff(db, queue) -> None:
    pool, name = queue
    job_id = f"flaky:twice:{uuid.uuid4().hex}"
    job = await pool.enqueue_job("flaky", job_id, 2, _job_id=job_id)
    w = worker(pool, name, [func(flaky, name="flaky")], max_tries=3)
    await w.main()
    assert await job.result(timeout=5) == "done after 3"
    assert w.jobs_retried == 2
    assert await JobFailure.count() == 0


async def test_last_failed_try_is_recorded_for_staff(db, queue) -> None:
    pool, name = queue
    job_id = f"flaky:always:{uuid.uuid4().hex}"
    job = await pool.enqueue_job("flaky", job_id, 99, _job_id=job_id)
    w = worker(pool, name, [func(flaky, name="flaky")], max_tries=3)
    await w.main()
    assert w.jobs_failed == 1
    assert await Job(job_id, pool, _queue_name=name).status() == JobStatus.complete
    failure = await JobFailure.select().where(JobFailure.job_id == job_id).first()
    assert failure["tries"] == 3
    assert "database unreachable (try 3)" in failure["error"]
    with pytest.raises(ConnectionError):
        await job.result(timeout=5)


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_seconds(t) for t in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff_seconds(30) == 600
