"""/health reports 503 when the database or Redis is unreachable."""

from __future__ import annotations

import asyncpg
import httpx

from core.db import migrate
from tests.conftest import admin_url, database_url, free_port, server_env
from tests.serving import serve


async def test_health_ok_then_503_when_the_database_goes_away(databases, tmp_path) -> None:
    url, name = database_url("health")
    conn = await asyncpg.connect(admin_url())
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(url)
        with serve(server_env(url, tmp_path), tmp_path / "server.log", free_port()) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                assert (await client.get("/health")).status_code == 200
                await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                response = await client.get("/health")
            assert response.status_code == 503
            assert response.json()["database"] == "down"
            assert response.json()["redis"] == "ok"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def test_health_503_when_redis_is_unreachable(databases, tmp_path) -> None:
    env = server_env(databases.demo_url, tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with serve(env, tmp_path / "server.log", free_port()) as base:
        response = httpx.get(base + "/health", timeout=10)
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "database": "ok", "redis": "down"}
        assert response.headers["content-type"].startswith("application/json")
