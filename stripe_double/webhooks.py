"""Webhook endpoints and deliveries, signed like Stripe, retried with back-off on non-2xx.

Every event is delivered (in ``auto`` mode) to each enabled endpoint whose
``enabled_events`` match, as a POST of the event JSON with ``Stripe-Signature``. A
delivery that does not get a 2xx answer is retried after ``Config.webhook_retry_delays``
and then marked failed. Test controls can send any event again: several times, shuffled,
with a stale timestamp or with a body changed after signing.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from stripe_double import ids
from stripe_double.signing import signature_header
from stripe_double.state import State

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass
class Endpoint:
    id: str
    url: str
    secret: str
    enabled_events: list[str]
    created: int
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    status: str = "enabled"
    configured: bool = False  # given at start: survives /_test/reset

    def wants(self, event_type: str) -> bool:
        return self.status == "enabled" and (
            "*" in self.enabled_events or event_type in self.enabled_events
        )

    def public(self, *, with_secret: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "api_version": self.api_version,
            "application": None,
            "created": self.created,
            "description": self.description,
            "enabled_events": list(self.enabled_events),
            "livemode": False,
            "metadata": dict(self.metadata),
            "status": self.status,
            "url": self.url,
        }
        if with_secret:
            obj["secret"] = self.secret
        return obj


@dataclass
class Attempt:
    at: float
    signature_timestamp: int
    status: int | None
    error: str | None = None
    tampered: bool = False


@dataclass
class Delivery:
    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    source: str  # "automatic" or "test"
    state: str = "pending"  # pending, delivered, failed
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: float | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


class Dispatcher:
    def __init__(self, state: State) -> None:
        self.state = state
        self.endpoints: dict[str, Endpoint] = {}
        self.deliveries: dict[str, Delivery] = {}
        self._queue: asyncio.Queue[str] | None = None
        self._backlog: list[str] = []
        self._workers: list[asyncio.Task[None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._client: httpx.AsyncClient | None = None
        state.on_event = self.on_event
        state.dispatcher = self

    # endpoints -------------------------------------------------------------------------
    def add_endpoint(
        self,
        url: str,
        secret: str | None = None,
        enabled_events: list[str] | None = None,
        *,
        configured: bool = False,
        **extra: Any,
    ) -> Endpoint:
        endpoint = Endpoint(
            id=ids.new_id("we"),
            url=url,
            secret=secret or ids.webhook_secret(),
            enabled_events=enabled_events or ["*"],
            created=self.state.ts(),
            configured=configured,
            **extra,
        )
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def reset(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.deliveries.clear()
        self._backlog.clear()
        self.endpoints = {k: e for k, e in self.endpoints.items() if e.configured}

    # automatic deliveries --------------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        """Called (under the state lock) for every new event."""
        targets = [e for e in self.endpoints.values() if e.wants(event["type"])]
        event["pending_webhooks"] = len(targets)
        if self.state.config.webhook_mode != "auto":
            return
        for endpoint in targets:
            delivery = self._new_delivery(event, endpoint, "automatic")
            self._enqueue(delivery.id)

    def _new_delivery(self, event: dict[str, Any], endpoint: Endpoint, source: str) -> Delivery:
        delivery = Delivery(
            id=ids.new_id("whd"),
            event_id=event["id"],
            event_type=event["type"],
            endpoint_id=endpoint.id,
            url=endpoint.url,
            source=source,
        )
        self.deliveries[delivery.id] = delivery
        return delivery

    def _enqueue(self, delivery_id: str) -> None:
        self._timers.pop(delivery_id, None)
        if self._queue is None:
            self._backlog.append(delivery_id)
        else:
            self._queue.put_nowait(delivery_id)

    async def start(self, workers: int = 4) -> None:
        if self._queue is not None:
            return
        self._queue = asyncio.Queue()
        self._client = httpx.AsyncClient(trust_env=False, timeout=self.state.config.webhook_timeout)
        self._workers = [asyncio.create_task(self._work()) for _ in range(workers)]
        for delivery_id in self._backlog:
            self._queue.put_nowait(delivery_id)
        self._backlog.clear()

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self._queue = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            delivery_id = await self._queue.get()
            try:
                delivery = self.deliveries.get(delivery_id)
                if delivery is not None and delivery.state == "pending":
                    await self._attempt(delivery)
            finally:
                self._queue.task_done()

    async def _attempt(self, delivery: Delivery) -> None:
        endpoint = self.endpoints.get(delivery.endpoint_id)
        event = self.state.find(delivery.event_id)
        if endpoint is None or event is None:
            delivery.state = "failed"
            return
        attempt = await self.send(event, endpoint)
        delivery.attempts.append(attempt)
        if attempt.status is not None and 200 <= attempt.status < 300:
            delivery.state = "delivered"
            delivery.next_attempt_at = None
            return
        delays = self.state.config.webhook_retry_delays
        retry = len(delivery.attempts) - 1
        if retry >= len(delays):
            delivery.state = "failed"
            delivery.next_attempt_at = None
            return
        delay = delays[retry]
        delivery.next_attempt_at = time.time() + delay
        loop = asyncio.get_running_loop()
        self._timers[delivery.id] = loop.call_later(delay, self._enqueue, delivery.id)

    # sending ---------------------------------------------------------------------------
    async def send(
        self,
        event: dict[str, Any],
        endpoint: Endpoint,
        *,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> Attempt:
        payload = self.state.event_payload(event)
        signed_at = self.state.ts() if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signature_header(payload, endpoint.secret, signed_at),
        }
        body = _tampered(payload) if tamper else payload
        attempt = Attempt(
            at=time.time(), signature_timestamp=signed_at, status=None, tampered=tamper
        )
        client = self._client or httpx.AsyncClient(trust_env=False, timeout=10)
        try:
            response = await client.post(endpoint.url, content=body, headers=headers)
            attempt.status = response.status_code
        except httpx.HTTPError as exc:
            attempt.error = f"{type(exc).__name__}: {exc}"
        finally:
            if client is not self._client:
                await client.aclose()
        return attempt

    async def redeliver(
        self,
        events: list[dict[str, Any]],
        endpoint: Endpoint | None = None,
        *,
        times: int = 1,
        shuffle: bool = False,
        seed: int | None = None,
        timestamp: int | None = None,
        tamper: bool = False,
    ) -> list[Delivery]:
        """Send events now, ``times`` each, to ``endpoint`` or every endpoint that wants them;
        one recorded attempt per send, no retries."""
        plan = []
        for event in events:
            targets = [endpoint] if endpoint else list(self.endpoints.values())
            for target in targets:
                if target.status == "enabled" and (endpoint or target.wants(event["type"])):
                    plan.extend([(event, target)] * times)
        if shuffle:
            random.Random(seed).shuffle(plan)
        done = []
        for event, endpoint in plan:
            delivery = self._new_delivery(event, endpoint, "test")
            attempt = await self.send(event, endpoint, timestamp=timestamp, tamper=tamper)
            delivery.attempts.append(attempt)
            ok = attempt.status is not None and 200 <= attempt.status < 300
            delivery.state = "delivered" if ok else "failed"
            done.append(delivery)
        return done

    async def flush(self, wait_seconds: float, *, retry_now: bool = False) -> bool:
        """Wait until no delivery is pending; with ``retry_now``, scheduled retries go now."""
        deadline = time.monotonic() + wait_seconds
        while True:
            if retry_now:
                for delivery_id in list(self._timers):
                    self._timers.pop(delivery_id).cancel()
                    self._enqueue(delivery_id)
            if not any(d.state == "pending" for d in self.deliveries.values()):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)

    def summary(self) -> dict[str, int]:
        counts = {"pending": 0, "delivered": 0, "failed": 0}
        for delivery in self.deliveries.values():
            counts[delivery.state] += 1
        return counts


def _tampered(payload: bytes) -> bytes:
    """The body changed after signing: livemode flipped (same length class, new meaning)."""
    event = json.loads(payload)
    event["livemode"] = True
    return json.dumps(event, indent=2).encode()
