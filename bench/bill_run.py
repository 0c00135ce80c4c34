"""Benchmark of an invoice run: 100,000 subscriptions invoiced and finalized end to end
by real arq worker processes, against a raw multi-row INSERT of the same rows.

Run from the repo root::

    .venv/bin/python bench/bill_run.py [--subscriptions 100000] [--workers 2]
                                       [--chunk-size 2000] [--jobs-per-worker 2]

What it does (bounded, cleans up after itself even on error):

1. creates a fresh PostgreSQL database (server from ``BENCH_DATABASE_URL``), applies the
   real migrations and the chart of accounts, and seeds in bulk SQL ``--subscriptions``
   subscriptions over six prices (flat, per-unit, package, volume; two metered prices,
   graduated and volume with a minimum: a third of the subscriptions, with usage events),
   four subscriptions per billing account, all due;
2. starts ``--workers`` arq worker processes (``workers.settings.WorkerSettings`` on a
   private queue);
3. starts the run (``core.billing.runs.start_run``), enqueues its chunks and waits until
   the run is completed: drafts built in bulk per chunk, then finalized by
   ``finalize_many`` (numbers, journal entries, audit events). The clock runs from the
   start of the run to its completion;
4. checks: one billed period and one finalized invoice per subscription, gapless numbers,
   a balanced ledger;
5. times a raw multi-row INSERT (``unnest``, one statement per table, one connection) of
   the same invoice and line rows into copies of the two tables;
6. prints the figures, ending with
   ``result: invoices=N seconds=S invoices_per_s=N raw_insert_seconds=S``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
from bench_support import (
    BENCH_REDIS_URL,
    ROOT,
    SECRET_KEY,
    create_database,
    database_urls,
    drop_database,
)

RUN_TIMEOUT = 600.0
WORKER = (
    "import sys\n"
    "from arq.worker import run_worker\n"
    "from workers.settings import WorkerSettings\n"
    "run_worker(WorkerSettings, queue_name=sys.argv[1], cron_jobs=[], poll_delay=0.05,\n"
    "           queue_read_limit=1000, max_jobs=int(sys.argv[2]))\n"
)


def start_workers(n: int, url: str, queue: str, jobs: int, var_dir: str) -> list[Any]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": BENCH_REDIS_URL,
        "LEDGERLINE_ENV": "test",
        "SECRET_KEY": SECRET_KEY,
        "LEDGERLINE_VAR_DIR": var_dir,
        "LOG_FORMAT": "json",
    }
    return [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, queue, str(jobs)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(n)
    ]


def stop(procs: list[Any]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


_INVOICE_COLS = (
    "billing_account, issuing_entity, status, currency, subtotal_minor, tax_minor, total_minor,"
    " paid_minor, balance_minor, memo, created_at, created_by, document_type, tax_status,"
    " approval_status, approved_by, functional_currency, fx_source, period_start, period_end"
)
_LINE_COLS = (
    "invoice, position, description, quantity, unit_price, amount_minor, tax_rate, tax_minor,"
    " tax_code, kind, revenue_account, period_start, period_end"
)
_INVOICE_TYPES = (
    "int[]", "int[]", "text[]", "text[]", "bigint[]", "bigint[]", "bigint[]", "bigint[]",
    "bigint[]", "text[]", "timestamptz[]", "text[]", "text[]", "text[]", "text[]", "text[]",
    "text[]", "text[]", "timestamptz[]", "timestamptz[]",
)  # fmt: skip
_LINE_TYPES = (
    "int[]", "int[]", "text[]", "numeric[]", "numeric[]", "bigint[]", "numeric[]", "bigint[]",
    "text[]", "text[]", "text[]", "timestamptz[]", "timestamptz[]",
)  # fmt: skip


def _unnest_insert(table: str, cols: str, types: tuple[str, ...]) -> str:
    params = ", ".join(f"${i}::{t}" for i, t in enumerate(types, start=1))
    return f"INSERT INTO {table} ({cols}) SELECT * FROM unnest({params})"


async def raw_insert_seconds(url: str) -> tuple[float, int, int]:
    """Time one multi-row INSERT per table of the run's invoice and line rows into copies."""
    conn = await asyncpg.connect(url)
    try:
        invoices = await conn.fetch(f"SELECT {_INVOICE_COLS} FROM invoice ORDER BY id")
        lines = await conn.fetch(f"SELECT {_LINE_COLS} FROM invoice_line ORDER BY id")
        await conn.execute("CREATE TABLE raw_invoice (LIKE invoice INCLUDING ALL)")
        await conn.execute("CREATE TABLE raw_invoice_line (LIKE invoice_line INCLUDING ALL)")
        inv_cols = [list(c) for c in zip(*invoices, strict=True)]
        line_cols = [list(c) for c in zip(*lines, strict=True)]
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(
                _unnest_insert("raw_invoice", _INVOICE_COLS, _INVOICE_TYPES), *inv_cols
            )
            await conn.execute(
                _unnest_insert("raw_invoice_line", _LINE_COLS, _LINE_TYPES), *line_cols
            )
        return time.perf_counter() - started, len(invoices), len(lines)
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    url, name, admin = database_urls()
    await create_database(admin, name)
    procs: list[Any] = []
    redis = None
    queue = f"bench:runs:{uuid.uuid4().hex}"
    try:
        os.environ["DATABASE_URL"] = url
        from arq import create_pool

        from core.audit.log import Actor
        from core.billing import runs
        from core.db import bind_engine, make_engine, migrate
        from core.ledger.posting import ensure_chart, trial_balance_difference
        from tests.integration.billing_runs_support import NOW, gapless, seed_bulk
        from workers.billing_runs_jobs import enqueue_chunks, job_namespace
        from workers.settings import redis_settings

        migrate(url)
        engine: Any = bind_engine(make_engine(url))
        await engine.start_connection_pool(min_size=1, max_size=4)
        await ensure_chart()
        t0 = time.perf_counter()
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                seeded = await seed_bulk(conn, args.subscriptions)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        print(
            f"seeded {seeded['subscriptions']} subscriptions, {seeded['accounts']} accounts,"
            f" {seeded['events']} usage events in {time.perf_counter() - t0:.1f} s"
        )
        with tempfile.TemporaryDirectory() as var_dir:
            procs = start_workers(args.workers, url, queue, args.jobs_per_worker, var_dir)
            redis = await create_pool(redis_settings(BENCH_REDIS_URL), default_queue_name=queue)
            await asyncio.sleep(2.0)  # let the workers import and connect
            started = time.perf_counter()
            plan = await runs.start_run(
                NOW, Actor.system("bench"), trigger="bench", chunk_size=args.chunk_size
            )
            ns = f"{job_namespace(url)}:{uuid.uuid4().hex[:6]}"
            await enqueue_chunks(redis, plan.run_id, [(n, 0) for n in plan.chunks], namespace=ns)
            deadline = started + RUN_TIMEOUT
            while True:
                progress = await runs.progress(plan.run_id)
                if not progress.running:
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit(f"run did not finish in {RUN_TIMEOUT} s")
                await asyncio.sleep(0.1)
            seconds = time.perf_counter() - started
            stop(procs)
            procs = []
        if progress.run["status"] != "completed":
            raise SystemExit(f"run {progress.run['status']}: {progress.failed_chunks[:3]}")
        check = await asyncpg.connect(url)
        try:
            billed = await check.fetchval("SELECT count(DISTINCT subscription) FROM billed_period")
            final = await check.fetchval("SELECT count(*) FROM invoice WHERE status <> 'draft'")
            numbers = [r[0] for r in await check.fetch("SELECT number FROM invoice")]
            line_count = await check.fetchval("SELECT count(*) FROM invoice_line")
        finally:
            await check.close()
        assert billed == args.subscriptions, (billed, args.subscriptions)
        assert final == args.subscriptions, (final, args.subscriptions)
        assert gapless([n for n in numbers if n])
        assert await trial_balance_difference() == 0
        raw_s, raw_inv, raw_lines = await raw_insert_seconds(url)
        await engine.close_connection_pool()
        rate = final / seconds
        print(
            f"run: {final} invoices ({line_count} lines) in {len(plan.chunks)} chunks by"
            f" {args.workers} workers: {seconds:.1f} s, {rate:,.0f} invoices/s"
        )
        print(
            f"raw multi-row INSERT of the same {raw_inv} invoices and {raw_lines} lines:"
            f" {raw_s:.2f} s ({raw_inv / raw_s:,.0f} invoices/s)"
        )
        print(
            f"result: invoices={final} seconds={seconds:.1f} invoices_per_s={rate:.0f}"
            f" raw_insert_seconds={raw_s:.2f}"
        )
    finally:
        stop(procs)
        if redis is not None:
            await redis.delete(queue)
            await redis.aclose()
        await drop_database(admin, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--jobs-per-worker", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
