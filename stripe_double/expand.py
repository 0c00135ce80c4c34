"""``expand[]``: replace an id by the object it names, along dotted paths (``a.b.c``).

Lists are expanded through ``data.``; a few fields Stripe leaves out unless asked for
(``line_items`` of a checkout session, ``refunds`` of a charge) are "includable".
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from stripe_double.errors import invalid

MAX_DEPTH = 4
Includer = Callable[[dict[str, Any]], Any]


def expand(
    obj: dict[str, Any],
    paths: list[str],
    lookup: Callable[[str], dict[str, Any] | None],
    includable: dict[tuple[str, str], Includer],
) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    for path in paths:
        if not isinstance(path, str) or not path:
            raise invalid("Invalid expand value", param="expand")
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise invalid(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        _expand(result, parts, path, lookup, includable)
    return result


def _expand(
    node: dict[str, Any],
    parts: list[str],
    path: str,
    lookup: Callable[[str], dict[str, Any] | None],
    includable: dict[tuple[str, str], Includer],
) -> None:
    head, rest = parts[0], parts[1:]
    if node.get("object") == "list" and head == "data":
        for item in node["data"]:
            if rest:
                _expand(item, rest, path, lookup, includable)
        return
    include = includable.get((node.get("object", ""), head))
    if include is not None and head not in node:
        node[head] = include(node)
    elif head not in node:
        raise invalid(f"This property cannot be expanded ({head}).", param="expand")
    value = node[head]
    if isinstance(value, str):
        target = lookup(value)
        if target is None:
            raise invalid(f"This property cannot be expanded ({head}).", param="expand")
        value = copy.deepcopy(target)
        node[head] = value
    if rest and isinstance(value, dict):
        _expand(value, rest, path, lookup, includable)
    elif rest and isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                _expand(item, rest, path, lookup, includable)
