"""The double's in-memory state: every object by id, events, idempotency records, config.

Single process; every change happens while holding ``State.lock`` (an asyncio lock).
Objects are plain dicts in Stripe's shape; ``meta`` keeps per-object internals that are not
part of the wire object (the test card behind a payment method, the idempotency key that
created a charge, a checkout session's line items, an event's payload bytes).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stripe_double import ids
from stripe_double.errors import missing
from stripe_double.idempotency import IdempotencyStore

DEFAULT_API_VERSION = "2026-10-28.endive"


@dataclass
class Config:
    latency: float = 0.0  # seconds every POST spends "at the network", outside the lock
    webhook_mode: str = "auto"  # "auto": deliver every event; "manual": only via /_test
    webhook_retry_delays: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    webhook_timeout: float = 10.0
    api_version: str = DEFAULT_API_VERSION
    api_key: str | None = None  # when set, the only secret key accepted
    base_url: str | None = None  # public URL of the double, else taken from the Host header

    def public(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "webhook_mode": self.webhook_mode,
            "webhook_retry_delays": self.webhook_retry_delays,
            "webhook_timeout": self.webhook_timeout,
            "api_version": self.api_version,
        }


@dataclass
class Ctx:
    """Who is acting: the API request (id, idempotency key) or a hosted page (None)."""

    state: State
    base_url: str
    request_id: str | None = None
    idempotency_key: str | None = None


class State:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.lock = asyncio.Lock()
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self.dispatcher: Any = None  # the webhooks.Dispatcher serving this state
        self.reset()

    def reset(self) -> None:
        self.clock_offset = 0.0
        self.objects: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, list[str]] = defaultdict(list)
        self.meta: dict[str, dict[str, Any]] = defaultdict(dict)
        self.idempotency = IdempotencyStore()

    def ctx(self, request_base: str, request_id: str | None = None, key: str | None = None) -> Ctx:
        return Ctx(self, (self.config.base_url or request_base).rstrip("/"), request_id, key)

    # time ------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def ts(self) -> int:
        return int(self.now())

    # objects ---------------------------------------------------------------------------
    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        self.kinds[obj["object"]].append(obj["id"])
        return obj

    def new(self, prefix: str, kind: str, **fields: Any) -> dict[str, Any]:
        """A new object with Stripe's common fields, stored and returned."""
        obj: dict[str, Any] = {"id": ids.new_id(prefix), "object": kind}
        obj.update(fields)
        obj.setdefault("created", self.ts())
        obj["livemode"] = False
        return self.add(obj)

    def find(self, object_id: str) -> dict[str, Any] | None:
        return self.objects.get(object_id)

    def get(self, kind: str, object_id: str | None, param: str = "id") -> dict[str, Any]:
        obj = self.objects.get(object_id or "")
        if obj is None or obj["object"] != kind:
            raise missing(kind, object_id or "", param)
        return obj

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Objects of one kind, newest first (Stripe's list order)."""
        return [self.objects[i] for i in reversed(self.kinds.get(kind, []))]

    # events ----------------------------------------------------------------------------
    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        ctx: Ctx | None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = self.new(
            "evt",
            "event",
            api_version=self.config.api_version,
            data=data,
            pending_webhooks=0,
            request={
                "id": ctx.request_id if ctx else None,
                "idempotency_key": ctx.idempotency_key if ctx else None,
            },
            type=event_type,
        )
        if self.on_event is not None:
            self.on_event(event)
        return event

    def event_payload(self, event: dict[str, Any]) -> bytes:
        """The event's webhook body, fixed when first delivered (Stripe's 2-space JSON)."""
        meta = self.meta[event["id"]]
        if "payload" not in meta:
            meta["payload"] = json.dumps(event, indent=2).encode()
        return meta["payload"]
