"""Webhook endpoints managed through the API (the secret is shown on creation only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from stripe_double.asgi import Route
from stripe_double.errors import invalid, missing, missing_param
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params, metadata
from stripe_double.state import Ctx
from stripe_double.webhooks import Dispatcher, Endpoint


def _dispatcher(ctx: Ctx) -> Dispatcher:
    dispatcher: Dispatcher = ctx.state.dispatcher
    return dispatcher


def _url(value: str | None) -> str:
    if not value:
        raise missing_param("url")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"Invalid URL: {value}", param="url", code="url_invalid")
    return value


def _events(p: Params) -> list[str]:
    events = p.list("enabled_events")
    if not events or not all(isinstance(e, str) and e for e in events):
        raise missing_param("enabled_events")
    return events


def _get(ctx: Ctx, endpoint_id: str) -> Endpoint:
    endpoint = _dispatcher(ctx).endpoints.get(endpoint_id)
    if endpoint is None:
        raise missing("webhook_endpoint", endpoint_id)
    return endpoint


def create(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(("url", "enabled_events", "description", "metadata", "api_version", "connect"))
    url = _url(p.str("url"))
    events = _events(p)
    endpoint = _dispatcher(ctx).add_endpoint(
        url,
        enabled_events=events,
        description=p.str("description"),
        metadata=metadata(p.raw("metadata")),
        api_version=p.str("api_version"),
    )
    return endpoint.public(with_secret=True)


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return _get(ctx, id).public()


def update(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    endpoint = _get(ctx, id)
    p.only(("url", "enabled_events", "description", "metadata", "disabled"))
    url = _url(p.str("url")) if "url" in p else endpoint.url
    events = _events(p) if "enabled_events" in p else endpoint.enabled_events
    disabled = p.bool("disabled", default=endpoint.status == "disabled")
    if "metadata" in p:
        endpoint.metadata = metadata(p.raw("metadata"), endpoint.metadata)
    if "description" in p:
        endpoint.description = p.str("description") or None
    endpoint.url, endpoint.enabled_events = url, events
    endpoint.status = "disabled" if disabled else "enabled"
    return endpoint.public()


def delete(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    _get(ctx, id)
    del _dispatcher(ctx).endpoints[id]
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only(LIST_PARAMS)
    items = [e.public() for e in reversed(_dispatcher(ctx).endpoints.values())]
    return paginate(items, p, "/v1/webhook_endpoints")


ROUTES = [
    Route("POST", "/v1/webhook_endpoints", create),
    Route("GET", "/v1/webhook_endpoints", list_),
    Route("GET", "/v1/webhook_endpoints/{id}", retrieve),
    Route("POST", "/v1/webhook_endpoints/{id}", update),
    Route("DELETE", "/v1/webhook_endpoints/{id}", delete),
]
