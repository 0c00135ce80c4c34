"""arq jobs of the subscriptions area: thin functions that call core services.

* ``subscription_lifecycle`` (cron, hourly at minute 5, so before the 02:15 invoice run):
  ends due trials (the first paid period starts at ``trial_end``) and cancels the
  subscriptions set to cancel at period end whose period is over
  (``core.billing.subscriptions.run_lifecycle``). Idempotent: each subscription is
  locked and re-checked in its own transaction; a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

from arq import cron

from core.audit.log import Actor
from core.billing.subscriptions import run_lifecycle
from workers.retry import retrying


@retrying()
async def subscription_lifecycle(ctx: dict[str, Any]) -> dict[str, int]:
    report = await run_lifecycle(Actor.system("subscription-lifecycle"))
    return {"trials_ended": report.trials_ended, "canceled": report.canceled}


FUNCTIONS: list[Any] = [subscription_lifecycle]  # job functions, registered in workers.settings
CRON_JOBS: list[Any] = [  # arq cron jobs, registered in workers.settings
    cron(subscription_lifecycle, minute={5}, run_at_startup=False, unique=True),
]
