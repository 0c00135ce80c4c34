"""Helpers for the Stripe double's tests: SDK clients and a webhook receiver."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import requests
import stripe

API_KEY = "sk_test_ledgerline_double"
WEBHOOK_SECRET = "whsec_ledgerline_test_secret_0123456789"


def make_client(url: str, *, retries: int = 0) -> stripe.StripeClient:
    """The real SDK pointed at the double: plain HTTP, no proxy from the environment."""
    session = requests.Session()
    session.trust_env = False
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": url},
        http_client=stripe.RequestsClient(session=session),
        max_network_retries=retries,
    )


# One plain-HTTP client for the whole run (creating one builds a TLS context: slow).
http = httpx.Client(trust_env=False, timeout=30)


def control(url: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    """Call a /_test control (POST with a JSON body, or GET)."""
    if payload is None and path.split("?")[0] in ("/_test/state", "/_test/deliveries"):
        response = http.get(url + path)
    else:
        response = http.post(url + path, json=payload or {})
    response.raise_for_status()
    return response.json()


@dataclass
class Received:
    body: bytes
    signature: str | None
    event: Any = None  # the stripe.Event when verification succeeded
    error: str | None = None

    @property
    def verified(self) -> bool:
        return self.event is not None


@dataclass
class Receiver:
    """A webhook endpoint that verifies every delivery with the SDK (300 s tolerance)."""

    secret: str = WEBHOOK_SECRET
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0  # answer 500 to this many deliveries first
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/webhooks/stripe"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver.handle(body, self.headers.get("Stripe-Signature"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, body: bytes, signature: str | None) -> int:
        record = Received(body, signature)
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                record.error = "receiver answered 500"
                self.received.append(record)
                return 500
        try:
            record.event = stripe.Webhook.construct_event(
                body.decode(), signature, self.secret, tolerance=300
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.received.append(record)
        return 200 if record.verified else 400

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.fail_next = 0

    def events(self, event_type: str | None = None) -> list[Any]:
        with self.lock:
            return [
                r.event
                for r in self.received
                if r.verified and (event_type is None or r.event.type == event_type)
            ]

    def rejected(self) -> list[Received]:
        with self.lock:
            return [
                r for r in self.received if not r.verified and r.error != "receiver answered 500"
            ]
