"""arq worker settings. Start a worker with ``arq workers.settings.WorkerSettings``
(``make run`` starts one beside the web process)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from arq import cron
from arq.connections import RedisSettings

from core import crypto
from core.db import bind_engine, close_pool, make_engine, open_pool
from core.notifications import mailer as mail
from core.payments import gateway as stripe_gateway
from core.runtime import freeze_startup_heap, thaw_heap
from core.settings import load_settings
from portal.logging_setup import configure_logging
from workers import (
    billing_runs_jobs,
    cash_jobs,
    collections_jobs,
    finance_jobs,
    payments_jobs,
    remittance_jobs,
    subscriptions_jobs,
    wallet_jobs,
)
from workers.jobs import nightly_aging, snapshot_aging_batch
from workers.retry import MAX_TRIES


def redis_settings(url: str) -> RedisSettings:
    """arq settings from a URL: ``redis://host:port/db`` or ``unix:///path/to/socket``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return RedisSettings(unix_socket_path=parts.path)
    return RedisSettings.from_dsn(url)


async def startup(ctx: dict[str, Any]) -> None:
    settings = load_settings()
    configure_logging(settings.log_json)
    bind_engine(make_engine(settings.database_url))
    crypto.configure(settings.encryption_keys)
    mail.configure(settings.smtp_url, settings.mail_from)
    stripe_gateway.configure(settings)
    await open_pool(max_size=5)
    freeze_startup_heap()


async def shutdown(ctx: dict[str, Any]) -> None:
    thaw_heap()
    await close_pool()


_AREAS = (
    payments_jobs,
    wallet_jobs,
    remittance_jobs,
    cash_jobs,
    collections_jobs,
    subscriptions_jobs,
    billing_runs_jobs,
    finance_jobs,
)


class WorkerSettings:
    functions = [snapshot_aging_batch, *(f for m in _AREAS for f in m.FUNCTIONS)]
    cron_jobs = [
        cron(nightly_aging, hour={1}, minute={5}, run_at_startup=False, unique=True),
        *(c for m in _AREAS for c in m.CRON_JOBS),
    ]
    on_startup = startup
    on_shutdown = shutdown
    max_tries = MAX_TRIES
    # Read past jobs a killed worker left in progress at the head of the queue (arq only
    # retries those once their in-progress key expires), so they never block the rest.
    queue_read_limit = 100
    job_timeout = 600
    # arq reads this at import; ``make run`` sets REDIS_URL to the embedded server.
    redis_settings = redis_settings(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
