"""arq jobs of the remittance area: thin functions that call core services."""

from __future__ import annotations

from typing import Any

from arq import cron

from core.audit.log import Actor
from core.remittance.services import rematch_open_lines

JOB_ACTOR = Actor.system("remittance-jobs")


async def rematch_statement_lines(ctx: dict[str, Any]) -> int:
    """Suggested and unmatched bank statement lines are matched again against the open
    invoices of now (new invoices, payers learned since); returns how many were applied.
    Idempotent: a line is applied once (its status changes under a row lock)."""
    return await rematch_open_lines(JOB_ACTOR)


FUNCTIONS: list[Any] = []  # job functions, registered in workers.settings
CRON_JOBS: list[Any] = [
    cron(rematch_statement_lines, hour={6, 12, 18}, minute={15}, run_at_startup=False, unique=True)
]
