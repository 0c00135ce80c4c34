"""Stripe list objects: ``{"object": "list", "data", "has_more", "url"}`` with cursors."""

from __future__ import annotations

from typing import Any

from stripe_double.errors import invalid
from stripe_double.params import Params

LIST_PARAMS = ("limit", "starting_after", "ending_before", "created")


def paginate(items: list[dict[str, Any]], params: Params, url: str) -> dict[str, Any]:
    """``items`` newest first; applies ``created``, the cursors and ``limit``."""
    limit = params.int("limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise invalid(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
        )
    items = _created_filter(items, params)
    after = params.str("starting_after")
    before = params.str("ending_before")
    if after and before:
        raise invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="starting_after",
            code="parameters_exclusive",
        )
    if after:
        index = _index(items, after, "starting_after")
        window = items[index + 1 :]
        page, has_more = window[:limit], len(window) > limit
    elif before:
        index = _index(items, before, "ending_before")
        window = items[:index]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def _index(items: list[dict[str, Any]], object_id: str, param: str) -> int:
    for index, item in enumerate(items):
        if item["id"] == object_id:
            return index
    raise invalid(f"No such object: '{object_id}'", param=param, code="resource_missing")


def _created_filter(items: list[dict[str, Any]], params: Params) -> list[dict[str, Any]]:
    created = params.raw("created")
    if created is None or created == "":
        return items
    if isinstance(created, str):
        exact = Params({"created": created}).int("created")
        return [i for i in items if i["created"] == exact]
    bounds = Params(created).only(("gt", "gte", "lt", "lte"))
    gt, gte = bounds.int("gt"), bounds.int("gte")
    lt, lte = bounds.int("lt"), bounds.int("lte")
    return [
        i
        for i in items
        if (gt is None or i["created"] > gt)
        and (gte is None or i["created"] >= gte)
        and (lt is None or i["created"] < lt)
        and (lte is None or i["created"] <= lte)
    ]
