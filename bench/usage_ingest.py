"""Benchmark of usage ingestion: the HTTP batch API against a raw asyncpg COPY.

Run from the repo root::

    .venv/bin/python bench/usage_ingest.py [--clients 3] [--seconds 10] [--workers 1]

What it does (bounded, cleans up after itself even on error):

1. creates a fresh PostgreSQL database (server from ``BENCH_DATABASE_URL``, default
   ``postgresql://postgres@127.0.0.1:5432/ledgerline_bench``, plus a random suffix),
   applies the real migrations (``core.db.migrate``), and creates one issuing entity,
   one customer organization, one billing account and one API key through the services;
2. starts the real portal (``uvicorn --factory portal.app:create_app``) over it, with the
   per-key rate limit raised out of the way;
3. pre-encodes batches of 10,000 events (5% of the ids repeat ids of earlier batches, so
   deduplication is exercised) and posts them with ``--clients`` concurrent clients for
   ``--seconds``; every response is checked (200, counts add up);
4. checks the table (rows = accepted, no duplicate id), TRUNCATEs it, and COPYs the same
   number of rows with fresh ids on one raw asyncpg connection;
5. prints both rates and their ratio, ending with
   ``result: events_per_s=N copy_events_per_s=N ratio=R``; the database is dropped and the
   server stopped at the end.

``events_per_s`` counts every event the API answered for (accepted + duplicate): each was
validated and deduplicated against the unique index in a durable, committed transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from bench_support import (
    BENCH_REDIS_URL,
    ROOT,
    SECRET_KEY,
    create_database,
    database_urls,
    drop_database,
    free_port,
)

BATCH = 10_000
DUPLICATE_SHARE = 0.05
ACCOUNT_CODE = "BENCH-USD-1"
REQUEST_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 30.0
SEED = 20_261_122
METRICS = ("api.calls", "storage.gb_hours", "compute.seconds")


async def seed(url: str) -> tuple[int, int, str]:
    """(organization id, billing account id, API key) through the real services."""
    from core.audit.log import Actor
    from core.db import bind_engine, make_engine
    from core.identity import services as identity
    from core.usage.keys import create_key

    engine: Any = bind_engine(make_engine(url))
    await engine.start_connection_pool(min_size=1, max_size=2)
    try:
        entity = await identity.create_issuing_entity(
            code="US",
            name="Ledgerline US",
            legal_name="Ledgerline Inc.",
            country="US",
            functional_currency="USD",
        )
        org = await identity.create_organization(name="Bench Metering Inc.", country="US")
        account = await identity.create_billing_account(
            code=ACCOUNT_CODE,
            name="Bench Metering (USD)",
            organization_id=org,
            issuing_entity_id=entity,
            currency_code="USD",
        )
        created = await create_key(org, "bench", Actor.system("bench"))
    finally:
        await engine.close_connection_pool()
    return org, account, created.key


def make_batches(count: int, rng: random.Random) -> list[bytes]:
    """``count`` encoded bodies of BATCH events; ~5% of each batch's ids repeat ids sent
    in earlier batches (the first batch repeats its own)."""
    encode = msgspec.json.Encoder().encode
    base = datetime.now(UTC) - timedelta(hours=1)
    sent: list[str] = []
    bodies = []
    for b in range(count):
        events = []
        for i in range(BATCH):
            if sent and rng.random() < DUPLICATE_SHARE:
                event_id = rng.choice(sent)
            else:
                event_id = f"evt-{b:04d}-{i:05d}"
            events.append(
                {
                    "id": event_id,
                    "billing_account": ACCOUNT_CODE,
                    "metric": METRICS[i % 3],
                    "quantity": str(rng.randint(1, 5000) / 100),
                    "timestamp": (base + timedelta(milliseconds=i)).isoformat(),
                    "properties": {"region": "us-east"},
                }
            )
        sent.extend(e["id"] for e in events[:: max(1, BATCH // 500)])
        bodies.append(encode({"events": events}))
    return bodies


def start_server(env: dict[str, str], log_path: Path, workers: int) -> tuple[Any, str]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "portal.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("server not ready")


def stop_server(process: Any) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def load(url: str, key: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    totals = {"requests": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "errors": 0}
    start = time.perf_counter()
    end = start + seconds

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as c:
            while queue and time.perf_counter() < end:
                body = queue.pop()
                response = await c.post("/api/v1/usage", content=body)
                if response.status_code != 200:
                    totals["errors"] += 1
                    print(f"  HTTP {response.status_code}: {response.text[:200]}")
                    continue
                data = response.json()
                totals["requests"] += 1
                for name in ("accepted", "duplicates", "rejected"):
                    totals[name] += data[name]

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    totals["seconds"] = time.perf_counter() - start
    return totals


async def raw_copy(url: str, organization: int, account: int, count: int) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE usage_event RESTART IDENTITY")
        now = datetime.now(UTC)
        records = [
            (
                organization,
                account,
                f"copy-{i:08d}",
                METRICS[i % 3],
                Decimal(i % 5000) / 100,
                now,
                '{"region":"us-east"}',
                now,
            )
            for i in range(count)
        ]
        columns = (
            "organization",
            "billing_account",
            "event_id",
            "metric",
            "quantity",
            "occurred_at",
            "properties",
            "received_at",
        )
        started = time.perf_counter()
        await conn.copy_records_to_table("usage_event", records=records, columns=columns)
        seconds = time.perf_counter() - started
        stored = await conn.fetchval("SELECT count(*) FROM usage_event")
        if stored != count:
            raise RuntimeError(f"COPY stored {stored} rows, expected {count}")
        return seconds
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    url, name, admin = database_urls()
    tmp = Path(tempfile.mkdtemp(prefix="ledgerline-bench-"))
    await create_database(admin, name)
    process = None
    try:
        from core.db import migrate

        migrate(url)
        organization, account, key = await seed(url)
        batches = max(8, int(args.seconds * 6) + 4)  # more than the API can take in time
        print(f"preparing {batches} batches of {BATCH} events ...", flush=True)
        bodies = make_batches(batches, random.Random(SEED))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": BENCH_REDIS_URL,
            "LEDGERLINE_ENV": "test",
            "SECRET_KEY": SECRET_KEY,
            "LEDGERLINE_VAR_DIR": str(tmp),
            "USAGE_RATE_LIMIT": "1000000",
            "USAGE_RATE_WINDOW": "1",
        }
        process, server = start_server(env, tmp / "server.log", args.workers)
        # warm-up: one small batch (imports, pool, first query plans)
        async with httpx.AsyncClient(base_url=server, timeout=REQUEST_TIMEOUT) as c:
            warm = await c.post(
                "/api/v1/usage",
                headers={"Authorization": f"Bearer {key}"},
                json={"events": []},
            )
            if warm.status_code != 200:
                raise RuntimeError(f"warm-up: HTTP {warm.status_code} {warm.text[:300]}")
        totals = await load(server, key, bodies, args.clients, args.seconds)
        stop_server(process)
        process = None
        if totals["errors"] or totals["rejected"]:
            raise RuntimeError(f"bad responses: {totals}")
        check = await asyncpg.connect(url)
        try:
            rows, distinct = await check.fetchrow(
                "SELECT count(*), count(DISTINCT event_id) FROM usage_event"
            )
        finally:
            await check.close()
        if rows != distinct or rows != totals["accepted"]:
            raise RuntimeError(f"table has {rows} rows ({distinct} distinct) for {totals}")
        answered = totals["accepted"] + totals["duplicates"]
        events_per_s = answered / totals["seconds"]
        copy_seconds = await raw_copy(url, organization, account, answered)
        copy_per_s = answered / copy_seconds
        ratio = events_per_s / copy_per_s
        print(
            f"HTTP API: {totals['requests']} batches, {answered} events"
            f" ({totals['accepted']} accepted, {totals['duplicates']} duplicates)"
            f" in {totals['seconds']:.2f} s with {args.clients} clients,"
            f" {args.workers} uvicorn worker(s): {events_per_s:,.0f} events/s"
        )
        print(f"raw COPY: {answered} rows in {copy_seconds:.2f} s: {copy_per_s:,.0f} events/s")
        print(f"ratio API / COPY: {ratio:.3f}")
        print(
            f"result: events_per_s={events_per_s:.0f} copy_events_per_s={copy_per_s:.0f}"
            f" ratio={ratio:.3f}"
        )
    finally:
        if process is not None:
            stop_server(process)
        await drop_database(admin, name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
