"""arq jobs of the payments area: thin functions that call core services.

* ``reconcile_payment_attempts`` (cron, every 5 minutes): asks Stripe about attempts whose
  outcome we do not know (``unknown``, stale ``processing``) and settles, fails or cancels
  them (``core.payments.attempts.reconcile``). Idempotent: it repeats Stripe calls with
  the attempts' own idempotency keys and settles under the attempt's row lock.
* ``purge_idempotency_keys`` (cron, hourly at :17): deletes idempotency records older
  than 48 hours (keys are promised for at least 24 hours).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from arq import cron

from core.idempotency.store import purge
from core.payments.attempts import reconcile


async def reconcile_payment_attempts(ctx: dict[str, Any]) -> dict[str, int]:
    return asdict(await reconcile())


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    return await purge()


FUNCTIONS: list[Any] = [reconcile_payment_attempts, purge_idempotency_keys]
CRON_JOBS: list[Any] = [
    cron(
        reconcile_payment_attempts,
        minute=set(range(0, 60, 5)),
        run_at_startup=True,
        unique=True,
        timeout=240,
    ),
    cron(purge_idempotency_keys, minute={17}, run_at_startup=False, unique=True),
]
