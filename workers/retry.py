"""Retry policy for job functions: exponential back-off through ``arq.Retry``, and a
``job_failure`` row once the last try has failed (then the error propagates, so arq
records the job as failed too)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from arq import Retry

from core.errors import DomainError
from core.operations.failures import backoff_seconds, record_failure

log = structlog.get_logger("ledgerline.jobs")
MAX_TRIES = 5

R = TypeVar("R")


def retrying(
    max_tries: int = MAX_TRIES, base_delay: float = 2.0
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    def decorate(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> R:
            job_try = int(ctx.get("job_try", 1))
            try:
                return await fn(ctx, *args, **kwargs)
            except Retry:
                raise
            except Exception as exc:
                # Domain errors (bad ids, invalid state) will not heal by retrying.
                final = job_try >= max_tries or isinstance(exc, DomainError)
                log.warning(
                    "job failed", job=fn.__name__, job_try=job_try, final=final, error=repr(exc)
                )
                if not final:
                    raise Retry(defer=backoff_seconds(job_try, base_delay)) from exc
                await record_failure(
                    job_name=fn.__name__,
                    job_id=str(ctx.get("job_id", "")),
                    arguments={"args": list(args), "kwargs": kwargs},
                    error=repr(exc),
                    tries=job_try,
                )
                raise

        return wrapper

    return decorate
