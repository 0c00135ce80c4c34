"""arq jobs of the cash area: thin functions that call core services."""

from __future__ import annotations

from typing import Any

from arq import cron

from core.audit.log import Actor
from core.cash.refunds import retry_stripe_refunds

JOB_ACTOR = Actor.system("cash-jobs")


async def send_waiting_stripe_refunds(ctx: dict[str, Any]) -> int:
    """Approved Stripe refunds that did not reach Stripe yet (crash, Stripe error) are
    sent again with the same idempotency key; returns how many completed."""
    return await retry_stripe_refunds(JOB_ACTOR)


FUNCTIONS: list[Any] = []  # job functions, registered in workers.settings
CRON_JOBS: list[Any] = [
    cron(
        send_waiting_stripe_refunds,
        minute=set(range(2, 60, 10)),
        run_at_startup=False,
        unique=True,
    )
]
