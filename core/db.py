"""Database engine selection and the transaction/locking helpers every service uses.

``make_engine`` picks Piccolo's SQLite or PostgreSQL engine from a URL; ``bind_engine``
points every table of every app at that one engine object, so ``transaction()`` applies
to all of them. Settings are applied by the app factory and the worker at start-up,
never at import time (``piccolo_conf.py`` does the same for Piccolo's own CLI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.query.methods.objects import Objects
from piccolo.query.methods.select import Select

APP_MODULES: tuple[str, ...] = (
    "core.identity.piccolo_app",
    "core.invoicing.piccolo_app",
    "core.payments.piccolo_app",
    "core.ledger.piccolo_app",
    "core.audit.piccolo_app",
    "core.operations.piccolo_app",
    "core.usage.piccolo_app",
    "core.catalog.piccolo_app",
    "core.billing.piccolo_app",
    "core.billing.runs_app",
    "core.idempotency.piccolo_app",
    "core.wallet.piccolo_app",
    "core.remittance.piccolo_app",
    "core.cash.piccolo_app",
    "core.collections.piccolo_app",
    "core.fx.piccolo_app",
    "core.tax.piccolo_app",
)

_engine: Engine | None = None
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def migrate(database_url: str) -> str:
    """Apply every app's Piccolo migrations forwards (the same CLI a developer runs)."""
    env = {**os.environ, "DATABASE_URL": database_url, "PICCOLO_CONF": "piccolo_conf"}
    result = subprocess.run(
        [sys.executable, "-m", "piccolo.main", "migrations", "forwards", "all"],
        cwd=_PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 or "failed" in output.lower():
        raise RuntimeError(f"migrations failed:\n{output}")
    return output


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        engine: Engine = SQLiteEngine(path=str(path), timeout=30)
        return engine
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")
    return PostgresEngine(config={"dsn": url}, extensions=())


def all_tables() -> list[type[Any]]:
    from importlib import import_module

    tables: list[type[Any]] = []
    for module in APP_MODULES:
        tables.extend(import_module(module).APP_CONFIG.table_classes)
    return tables


def bind_engine(engine: Engine) -> Engine:
    global _engine
    _engine = engine
    for table in all_tables():
        table._meta.db = engine
    return engine


def engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database engine not configured: call bind_engine() at start-up")
    return _engine


def is_sqlite() -> bool:
    return isinstance(engine(), SQLiteEngine)


async def _release(connection: Any) -> None:
    """What a connection needs on its way back to the pool.

    asyncpg's default reset costs a round trip per query (``RESET ALL``, ``UNLISTEN *``,
    advisory unlock). We hold no session state: locks are transaction-scoped, nothing
    LISTENs or SETs. Only an unfinished transaction, if one ever leaked, is rolled back.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def open_pool(max_size: int = 10) -> None:
    db = engine()
    if isinstance(db, PostgresEngine) and db.pool is None:
        await db.start_connection_pool(min_size=1, max_size=max_size, reset=_release)


async def close_pool() -> None:
    db = engine()
    if isinstance(db, PostgresEngine) and db.pool is not None:
        await db.close_connection_pool()


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """One service call, one transaction. SQLite takes the write lock up front."""
    db = engine()
    if isinstance(db, SQLiteEngine):
        async with db.transaction(transaction_type=TransactionType.immediate):
            yield
    else:
        async with db.transaction():
            yield


Q = TypeVar("Q", Select, Objects)


def for_update(query: Q) -> Q:
    """``SELECT … FOR UPDATE OF <the query's table>`` on PostgreSQL (joined tables are
    read, not locked); SQLite already serializes writers."""
    if is_sqlite():
        return query
    return query.lock_rows(of=(query.table,))


async def advisory_lock(key: int) -> None:
    """Transaction-scoped lock on an arbitrary key (PostgreSQL); no-op on SQLite."""
    if not is_sqlite():
        await engine().run_ddl(f"SELECT pg_advisory_xact_lock({int(key)})")
