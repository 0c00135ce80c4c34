"""Recording background jobs that failed after their last try, for staff to see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.db import transaction
from core.operations.tables import JobFailure


def backoff_seconds(job_try: int, base: float = 2.0, cap: float = 600.0) -> float:
    """Exponential back-off before try ``job_try + 1``: base, 2*base, 4*base, ... capped."""
    return min(cap, base * 2 ** max(0, job_try - 1))


async def record_failure(
    *, job_name: str, job_id: str, arguments: dict[str, Any], error: str, tries: int
) -> None:
    async with transaction():
        await JobFailure.insert(
            JobFailure(
                job_name=job_name,
                job_id=job_id,
                arguments=arguments,
                error=error[:2000],
                tries=tries,
                failed_at=datetime.now(UTC),
            )
        ).on_conflict(action="DO NOTHING")
