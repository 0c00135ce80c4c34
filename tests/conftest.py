"""Shared fixtures: real PostgreSQL and Redis, created fresh for each run.

* ``TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/ledgerline_test``)
  names the server and a base name; each run creates ``<base>_<run>_it`` (integration,
  emptied before each test that asks for ``db``) and ``<base>_<run>_demo`` (the demo data
  set, read by scoping and browser tests), applies the real migrations to both, and drops
  them at the end.
* ``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from piccolo.engine.base import Engine

from core.db import all_tables, bind_engine, make_engine, migrate
from core.demo_data import seed_demo
from stripe_double import Config, RunningDouble, start_in_thread
from tests.serving import serve

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ledgerline_test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Kept in the environment so a second import of this module (tests import helpers from
# it) agrees on the database names.
RUN_ID = os.environ.setdefault("LEDGERLINE_TEST_RUN", uuid.uuid4().hex[:8])


def database_url(suffix: str) -> tuple[str, str]:
    parts = urlsplit(TEST_DATABASE_URL)
    base = parts.path.lstrip("/") or "ledgerline_test"
    # Under pytest-xdist each worker gets its own databases (and so its own Redis
    # namespace, which is derived from the database URL).
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    name = f"{base}_{RUN_ID}{'_' + worker if worker else ''}_{suffix}"
    return urlunsplit(parts._replace(path="/" + name)), name


def live_database_url() -> str:
    """The demo database the ``live_server`` serves (its sessions are namespaced by it)."""
    return database_url("demo")[0]


def admin_url() -> str:
    return urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path="/postgres"))


@dataclass
class Databases:
    it_url: str
    demo_url: str
    it: Engine
    demo: Engine


@pytest.fixture(scope="session")
async def databases() -> AsyncIterator[Databases]:
    it_url, it_name = database_url("it")
    demo_url, demo_name = database_url("demo")
    conn = await asyncpg.connect(admin_url())
    try:
        for name in (it_name, demo_name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    migrate(it_url)
    migrate(demo_url)
    engines = Databases(it_url, demo_url, make_engine(it_url), make_engine(demo_url))
    for engine in (engines.it, engines.demo):
        await engine.start_connection_pool(min_size=1, max_size=8)
    bind_engine(engines.demo)
    await seed_demo()
    bind_engine(engines.it)
    yield engines
    for engine in (engines.it, engines.demo):
        await engine.close_connection_pool()
    conn = await asyncpg.connect(admin_url())
    try:
        for name in (it_name, demo_name):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def empty_tables(engine: Engine) -> None:
    """Empty every table and restart every id sequence, cheaply: TRUNCATE (file work per
    table) only the tables that hold rows, then rewind the sequences that were used."""
    tables = [t._meta.tablename for t in all_tables()]
    probe = " UNION ALL ".join(
        f"SELECT '{name}' AS t WHERE EXISTS (SELECT 1 FROM \"{name}\")" for name in tables
    )
    filled = [row["t"] for row in await engine.run_ddl(probe)]
    if filled:
        names = ", ".join(f'"{name}"' for name in filled)
        await engine.run_ddl(f"TRUNCATE {names} CASCADE")
    sequences = ", ".join(f"'{name}_id_seq'" for name in tables)
    await engine.run_ddl(
        "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) "
        f"FROM pg_sequences WHERE last_value IS NOT NULL AND sequencename IN ({sequences})"
    )


@pytest.fixture
async def db(databases: Databases) -> AsyncIterator[Engine]:
    """The integration database, emptied, with the chart of accounts in place."""
    from core.ledger.posting import ensure_chart

    bind_engine(databases.it)
    await empty_tables(databases.it)
    await ensure_chart()
    yield databases.it
    bind_engine(databases.it)


@pytest.fixture
async def demo_db(databases: Databases) -> AsyncIterator[Engine]:
    """The demo data set (read-only by convention: tests must not change it)."""
    bind_engine(databases.demo)
    yield databases.demo
    bind_engine(databases.it)


class Mailbox:
    """Messages received by the test SMTP server (aiosmtpd), newest last."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    def clear(self) -> None:
        self.messages.clear()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[str, Mailbox]]:
    """A real SMTP server on localhost; yields (SMTP_URL, mailbox)."""
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield f"smtp://127.0.0.1:{port}", box
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[str, Mailbox]) -> Mailbox:
    smtp_server[1].clear()
    return smtp_server[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database: str, var_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": TEST_REDIS_URL,
        "LEDGERLINE_ENV": "test",
        "SECRET_KEY": "test-secret-" + "x" * 40,
        "LEDGERLINE_VAR_DIR": str(var_dir),
        **extra,
    }


STRIPE_TEST_KEY = "sk_test_ledgerline_tests"
STRIPE_TEST_WEBHOOK_SECRET = "whsec_ledgerline_tests"
FAST_WEBHOOK_RETRIES = [0.05, 0.1, 0.2]


@pytest.fixture(scope="session")
def stripe_double() -> Iterator[RunningDouble]:
    """A Stripe test double for in-process tests; webhooks are not pushed (``manual``
    mode): tests fetch events or post signed payloads to the app themselves."""
    running = start_in_thread(
        config=Config(webhook_mode="manual", webhook_retry_delays=list(FAST_WEBHOOK_RETRIES))
    )
    yield running
    running.stop()


def stripe_env(double_url: str) -> dict[str, str]:
    return {
        "STRIPE_API_BASE": double_url,
        "STRIPE_API_KEY": STRIPE_TEST_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_TEST_WEBHOOK_SECRET,
    }


@dataclass
class LiveServer:
    url: str
    stripe_url: str = ""


@pytest.fixture(scope="session")
def live_server(
    databases: Databases,
    tmp_path_factory: pytest.TempPathFactory,
    smtp_server: tuple[str, Mailbox],
) -> Iterator[LiveServer]:
    """The portal served by uvicorn on localhost, over the demo database, mailing to the
    test SMTP server, paying through its own Stripe double (which pushes signed webhooks
    to the portal's /webhooks/stripe)."""
    port = free_port()
    double = start_in_thread(
        webhooks={f"http://127.0.0.1:{port}/webhooks/stripe": STRIPE_TEST_WEBHOOK_SECRET},
        config=Config(webhook_retry_delays=list(FAST_WEBHOOK_RETRIES)),
    )
    env = server_env(
        databases.demo_url,
        tmp_path_factory.mktemp("var"),
        SMTP_URL=smtp_server[0],
        BASE_URL=f"http://127.0.0.1:{port}",
        **stripe_env(double.url),
    )
    log = tmp_path_factory.mktemp("server") / "server.log"
    try:
        with serve(env, log, port) as url:
            yield LiveServer(url, double.url)
    finally:
        double.stop()
