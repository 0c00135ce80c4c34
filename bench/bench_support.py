"""What every benchmark shares: the repo on sys.path, where the bench database and Redis
are, a fresh database per run (dropped at the end), and a free local port."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledgerline_bench"
)
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "bench-secret-" + "k" * 40


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_urls() -> tuple[str, str, str]:
    """(a fresh bench database URL, its name, the maintenance database URL)."""
    base = urlsplit(BENCH_DATABASE_URL).path.lstrip("/") or "ledgerline_bench"
    name = f"{base}_{uuid.uuid4().hex[:8]}"
    return with_db(BENCH_DATABASE_URL, name), name, with_db(BENCH_DATABASE_URL, "postgres")


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
