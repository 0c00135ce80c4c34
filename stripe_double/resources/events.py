"""Events: retrieve and list (newest first), filtered by ``type`` or ``types[]``."""

from __future__ import annotations

from typing import Any

from stripe_double.asgi import Route
from stripe_double.errors import invalid
from stripe_double.lists import LIST_PARAMS, paginate
from stripe_double.params import Params
from stripe_double.state import Ctx


def retrieve(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    return ctx.state.get("event", id)


def list_(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only((*LIST_PARAMS, "type", "types", "delivery_success"))
    kind, kinds = p.str("type"), p.list("types")
    if kind and kinds:
        raise invalid("You may only specify one of these parameters: type, types.", param="type")
    items = ctx.state.all("event")
    if kind:
        if kind.endswith(".*"):
            items = [e for e in items if e["type"].startswith(kind[:-1])]
        else:
            items = [e for e in items if e["type"] == kind]
    if kinds:
        items = [e for e in items if e["type"] in kinds]
    return paginate(items, p, "/v1/events")


ROUTES = [
    Route("GET", "/v1/events", list_),
    Route("GET", "/v1/events/{id}", retrieve),
]
