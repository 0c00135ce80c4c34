"""Serving the double: ``run`` (blocking) and ``start_in_thread`` (for tests and the demo)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import uvicorn

from stripe_double.app import StripeDouble
from stripe_double.state import Config

DEFAULT_PORT = 12111
Webhooks = Mapping[str, str] | Iterable[tuple[str, str | None]] | Iterable[str]


def parse_webhook(spec: str) -> tuple[str, str | None]:
    """``"http://host/hook=whsec_abc"`` → (url, secret); without ``=whsec_…`` a secret is made."""
    url, sep, secret = spec.rpartition("=")
    if sep and secret.startswith("whsec_"):
        return url, secret
    return spec, None


def normalize_webhooks(webhooks: Webhooks | None) -> list[tuple[str, str | None]]:
    if not webhooks:
        return []
    if isinstance(webhooks, Mapping):
        return list(webhooks.items())
    return [parse_webhook(w) if isinstance(w, str) else (w[0], w[1]) for w in webhooks]


def create_app(webhooks: Webhooks | None = None, config: Config | None = None) -> StripeDouble:
    return StripeDouble(normalize_webhooks(webhooks), config)


def run(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    webhooks: Webhooks | None = None,
    config: Config | None = None,
) -> None:
    """Serve the double until interrupted."""
    uvicorn.run(
        create_app(webhooks, config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="asyncio",
    )


@dataclass
class RunningDouble:
    url: str
    app: StripeDouble
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningDouble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    webhooks: Webhooks | None = None,
    config: Config | None = None,
) -> RunningDouble:
    """Start the double on a background thread (port 0: a free port) and wait until ready."""
    app = create_app(webhooks, config)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", loop="asyncio")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="stripe-double", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Stripe double did not start")
        time.sleep(0.01)
    return RunningDouble(f"http://{host}:{bound_port}", app, server, thread)
