"""Liveness and readiness: checks the database and Redis; 503 when either is down."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get

from core.db import engine


async def _check_db() -> bool:
    try:
        await asyncio.wait_for(engine().run_ddl("SELECT 1"), timeout=2)
    except Exception:
        return False
    return True


async def _check_redis(request: Request[Any, Any, Any]) -> bool:
    try:
        return bool(await asyncio.wait_for(request.app.state.redis.ping(), timeout=2))
    except Exception:
        return False


@get("/health", include_in_schema=True, summary="Health of the database and Redis")
async def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    db_ok, redis_ok = await asyncio.gather(_check_db(), _check_redis(request))
    ok = db_ok and redis_ok
    return Response(
        {
            "status": "ok" if ok else "unavailable",
            "database": "ok" if db_ok else "down",
            "redis": "ok" if redis_ok else "down",
        },
        status_code=200 if ok else 503,
        headers={"Cache-Control": "no-store"},
    )
