"""arq jobs of the billing_runs area: thin functions that call core services.

* ``bill_chunk(run_id, number)``: one chunk of an invoice run (job id
  ``{ns}:run:{run}:chunk:{n}``; ``:retry:{k}`` for a resume or a staff retry). Transient
  failures retry with exponential back-off; the last failure marks the chunk failed with
  its reason, for the console's retry button. The chunk that completes a run starts its
  catch-up run (``runs.start_catch_up``) when subscriptions that were several periods
  behind are still due, and enqueues it.
* ``scheduled_invoice_run`` (cron, daily 02:15 UTC): plans a run of everything due now and
  enqueues its chunks.
* ``resume_stalled_runs`` (cron, every 10 minutes): re-enqueues chunks of running runs that
  have not moved for 15 minutes (a worker killed mid-chunk); running a chunk twice is
  harmless.
* ``reconcile_late_usage`` (cron, hourly): late usage events (see core.billing.reconciliation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq import Retry, cron
from arq.connections import ArqRedis

from core.audit.log import Actor
from core.billing import reconciliation, runs
from core.billing.run_tables import RunChunk
from core.errors import DomainError
from core.operations.failures import backoff_seconds, record_failure
from core.settings import load_settings
from workers.retry import MAX_TRIES

log = structlog.get_logger("ledgerline.runs")
STALL_AFTER = timedelta(minutes=15)


def job_namespace(database_url: str | None = None) -> str:
    """Job ids are namespaced by database (two deployments or test runs sharing one Redis
    never collide); the same database always gives the same ids."""
    url = database_url or load_settings().database_url
    return "ll:" + hashlib.sha256(url.encode()).hexdigest()[:12]


async def enqueue_chunks(
    redis: ArqRedis,
    run_id: int,
    chunks: Sequence[tuple[int, int]],
    *,
    namespace: str | None = None,
    queue_name: str | None = None,
) -> list[str]:
    """Enqueue ``(number, attempt)`` chunks of a run; a second enqueue of the same id is
    refused by arq, which is what we want."""
    ns = job_namespace() if namespace is None else namespace
    ids = []
    for number, attempt in chunks:
        job_id = runs.chunk_job_id(run_id, number, attempt, ns)
        kwargs: dict[str, Any] = {"_job_id": job_id}
        if queue_name:
            kwargs["_queue_name"] = queue_name
        await redis.enqueue_job("bill_chunk", run_id, number, **kwargs)
        ids.append(job_id)
    return ids


async def bill_chunk(ctx: dict[str, Any], run_id: int, number: int) -> dict[str, int]:
    job_try = int(ctx.get("job_try", 1))
    try:
        report = await runs.process_chunk(run_id, number)
    except Retry:
        raise
    except Exception as exc:
        final = job_try >= MAX_TRIES or isinstance(exc, DomainError)
        log.warning("chunk failed", run=run_id, chunk=number, job_try=job_try, error=repr(exc))
        await runs.record_chunk_error(run_id, number, repr(exc), final=final)
        if not final:
            raise Retry(defer=backoff_seconds(job_try)) from exc
        await record_failure(
            job_name="bill_chunk",
            job_id=str(ctx.get("job_id", "")),
            arguments={"args": [run_id, number]},
            error=repr(exc),
            tries=job_try,
        )
        raise
    # the chunk that completes the run starts its catch-up run when anything is still due
    follow_up = await runs.start_catch_up(run_id, Actor.system("scheduler"))
    if follow_up is not None:
        await enqueue_chunks(ctx["redis"], follow_up.run_id, [(n, 0) for n in follow_up.chunks])
    return {"created": report.created, "invoices": report.invoices, "held": len(report.held)}


async def start_and_enqueue(
    redis: ArqRedis, as_of: datetime, actor: Actor, *, trigger: str, chunk_size: int
) -> runs.RunPlan:
    plan = await runs.start_run(as_of, actor, trigger=trigger, chunk_size=chunk_size)
    await enqueue_chunks(redis, plan.run_id, [(n, 0) for n in plan.chunks])
    return plan


async def scheduled_invoice_run(ctx: dict[str, Any]) -> int:
    plan = await start_and_enqueue(
        ctx["redis"],
        datetime.now(UTC),
        Actor.system("scheduler"),
        trigger="cron",
        chunk_size=runs.DEFAULT_CHUNK_SIZE,
    )
    return plan.run_id


async def resume_stalled_runs(ctx: dict[str, Any]) -> int:
    run_ids = await runs.stalled_runs()
    limit = datetime.now(UTC) - STALL_AFTER
    count = 0
    for run_id in run_ids:
        rows = await RunChunk.select(RunChunk.number, RunChunk.attempts).where(
            (RunChunk.run == run_id)
            & RunChunk.status.is_in(["queued", "running", "retrying"])
            & (RunChunk.updated_at < limit)
        )
        await enqueue_chunks(ctx["redis"], run_id, [(r["number"], r["attempts"] + 1) for r in rows])
        count += len(rows)
    return count


async def reconcile_late_usage(ctx: dict[str, Any]) -> int:
    report = await reconciliation.reconcile(datetime.now(UTC), Actor.system("reconciliation"))
    return report.applied + report.corrected + report.held


FUNCTIONS: list[Any] = [bill_chunk]
CRON_JOBS: list[Any] = [
    cron(scheduled_invoice_run, hour={2}, minute={15}, run_at_startup=False, unique=True),
    cron(resume_stalled_runs, minute=set(range(0, 60, 10)), run_at_startup=False, unique=True),
    cron(reconcile_late_usage, minute={40}, run_at_startup=False, unique=True),
]
