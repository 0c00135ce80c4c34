"""arq jobs of the wallet area: thin functions that call core services.

* ``autopay_daily`` (cron, 06:00 UTC): ``core.wallet.autopay_run.run_autopay(today)``,
  then one ``send_autopay_notice`` job per failed charge (job id ``autopay-notice:{id}``).
* ``queue_receipts`` (cron, every 5 minutes): records the receipt of each new successful
  payment and enqueues ``send_receipt`` (job id ``receipt:{delivery_id}``).
* ``send_receipt`` / ``send_autopay_notice``: send one email; the row is claimed before
  sending, so a retried or duplicated job never sends twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from arq import cron

from core.payments import gateway
from core.wallet import autopay_run, receipts
from workers.retry import retrying


def _base_url() -> str:
    """Our public URL (links in emails), from the settings the worker configured the
    Stripe gateway with at start-up."""
    return gateway.config().base_url.rstrip("/")


async def enqueue_notices(redis: Any, charge_ids: list[int]) -> None:
    for charge_id in charge_ids:
        await redis.enqueue_job(
            "send_autopay_notice", charge_id, _job_id=f"autopay-notice:{charge_id}"
        )


async def autopay_daily(ctx: dict[str, Any]) -> dict[str, int]:
    _base_url()
    report = await autopay_run.run_autopay(datetime.now(UTC).date())
    await enqueue_notices(ctx["redis"], await autopay_run.pending_notices())
    return {
        "charged": report.charged,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "skipped": report.skipped,
        "errors": report.errors,
    }


@retrying()
async def send_autopay_notice(ctx: dict[str, Any], charge_id: int) -> str:
    return await autopay_run.send_failure_notice(charge_id, _base_url())


async def queue_receipts(ctx: dict[str, Any]) -> int:
    await receipts.queue_receipts()
    pending = await receipts.pending_receipts()
    for delivery_id in pending:
        await ctx["redis"].enqueue_job(
            "send_receipt", delivery_id, _job_id=f"receipt:{delivery_id}"
        )
    return len(pending)


@retrying()
async def send_receipt(ctx: dict[str, Any], delivery_id: int) -> str:
    return await receipts.send_receipt(delivery_id, _base_url())


FUNCTIONS: list[Any] = [send_receipt, send_autopay_notice]
CRON_JOBS: list[Any] = [
    cron(autopay_daily, hour={6}, minute={0}, run_at_startup=False, unique=True, timeout=3000),
    cron(
        queue_receipts,
        minute=set(range(0, 60, 5)),
        run_at_startup=False,
        unique=True,
    ),
]
