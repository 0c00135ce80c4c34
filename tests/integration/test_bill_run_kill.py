"""A bill run over a few thousand subscriptions by real arq worker processes, SIGKILLed
at random points, then resumed: every subscription is invoiced exactly once for the
period, every invoice is finalized, numbers are gapless per series, the books balance
and the audit chain holds."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from arq import create_pool

from core.audit.log import verify_chain
from core.billing import runs
from core.billing.run_tables import BilledPeriod, RunChunk
from core.db import engine
from core.invoicing.tables import Invoice
from tests.conftest import TEST_REDIS_URL, server_env
from tests.integration.billing_runs_support import NOW, assert_books_balance, gapless, seed_bulk
from tests.integration.factories import SYSTEM
from workers.billing_runs_jobs import enqueue_chunks, job_namespace
from workers.settings import redis_settings

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIPTIONS = 2000
WORKER = (
    "import sys\n"
    "from arq.worker import run_worker\n"
    "from workers.settings import WorkerSettings\n"
    "run_worker(WorkerSettings, queue_name=sys.argv[1], poll_delay=0.05, cron_jobs=[],\n"
    "           queue_read_limit=1000, max_jobs=4)\n"
)


def start_worker(env: dict[str, str], queue: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, queue],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def chunks_by_status(run_id: int) -> dict[str, int]:
    rows = await RunChunk.select(RunChunk.status).where(RunChunk.run == run_id)
    out: dict[str, int] = {}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


async def wait_for(predicate, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_sigkilled_workers_lose_nothing_and_duplicate_nothing(
    db, databases, tmp_path
) -> None:
    async with engine().transaction():
        conn = engine().current_transaction.get().connection
        seeded = await seed_bulk(conn, SUBSCRIPTIONS)
    plan = await runs.start_run(NOW, SYSTEM, trigger="test", chunk_size=200)
    assert plan.subscriptions == SUBSCRIPTIONS

    queue = f"test:runs:{uuid.uuid4().hex}"
    ns = f"{job_namespace(databases.it_url)}:{uuid.uuid4().hex[:6]}"
    env = server_env(databases.it_url, tmp_path, REDIS_URL=TEST_REDIS_URL)
    redis = await create_pool(redis_settings(TEST_REDIS_URL), default_queue_name=queue)
    rng = random.Random()
    kills = interrupted = 0
    try:
        await enqueue_chunks(redis, plan.run_id, [(n, 0) for n in plan.chunks], namespace=ns)
        for _ in range(3):
            before = await _work_done(plan.run_id)
            if kills:  # what the killed worker held goes back on the queue
                await enqueue_chunks(
                    redis, plan.run_id, await runs.resume_run(plan.run_id), namespace=ns
                )
            worker = start_worker(env, queue)
            # Once it has done some work, kill it at a random point of its chunks.
            started = await wait_for(lambda before=before: _moved(plan.run_id, before), within=20)
            assert started
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            kills += 1
            status = await chunks_by_status(plan.run_id)
            if status.get("done", 0) == len(plan.chunks):
                break
            interrupted += 1
        # Recovery: the chunks that are not done go back on the queue; a fresh worker
        # finishes the run.
        await enqueue_chunks(redis, plan.run_id, await runs.resume_run(plan.run_id), namespace=ns)
        worker = start_worker(env, queue)
        try:
            finished = await wait_for(lambda: _completed(plan.run_id), within=60)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=10)
        assert finished, await chunks_by_status(plan.run_id)
    finally:
        keys = [k async for k in redis.scan_iter(match=f"arq:*{ns}*")]
        if keys:
            await redis.delete(*keys)
        await redis.delete(queue)
        await redis.aclose()

    assert interrupted >= 1  # at least one kill landed mid-run
    billed = await BilledPeriod.select(BilledPeriod.subscription, BilledPeriod.invoice)
    assert len(billed) == SUBSCRIPTIONS
    assert len({b["subscription"] for b in billed}) == SUBSCRIPTIONS
    invoices = await Invoice.select(Invoice.id, Invoice.status, Invoice.number)
    assert len(invoices) == SUBSCRIPTIONS  # no stray invoice from a killed transaction
    assert {b["invoice"] for b in billed} == {i["id"] for i in invoices}
    assert all(i["status"] in ("open", "paid") for i in invoices)
    assert gapless([i["number"] for i in invoices])
    progress = await runs.progress(plan.run_id)
    assert (progress.invoices, progress.finalized, progress.held) == (SUBSCRIPTIONS,) * 2 + (0,)
    assert seeded["events"] > 0
    await assert_books_balance()
    assert (await verify_chain()).ok


async def _work_done(run_id: int) -> tuple[int, int]:
    """(invoices drafted, invoices finalized) so far."""
    drafted = await Invoice.count()
    final = await Invoice.count().where(Invoice.status != "draft")
    return drafted, final


async def _moved(run_id: int, before: tuple[int, int]) -> bool:
    return await _work_done(run_id) != before


async def _completed(run_id: int) -> bool:
    return (await runs.progress(run_id)).run["status"] == "completed"
