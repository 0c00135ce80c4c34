"""Stripe's wire format for parameters: form encoding with bracket notation.

``metadata[order]=1`` → ``{"metadata": {"order": "1"}}``;
``line_items[0][price_data][currency]=usd`` → ``{"line_items": [{"price_data": {...}}]}``;
``expand[]=a&expand[]=b`` → ``{"expand": ["a", "b"]}``. Values stay strings; a mapping
whose keys are all decimal indices becomes a list ordered by index. The same parser
reads request bodies (POST) and query strings (GET).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A parameter name that is not valid bracket notation."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Invalid parameter name: {name}")
        self.name = name


def parse_form(raw: bytes | str) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        match = _KEY.match(name)
        if not match:
            raise FormError(name)
        path = [match.group(1), *_PART.findall(match.group(2))]
        _assign(root, path, value, name)
    return _listify(root)


def _assign(node: dict[str, Any], path: list[str], value: str, name: str) -> None:
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part == "":  # "a[]": append, as a synthetic next index
            if not last:
                raise FormError(name)
            part = str(sum(1 for key in node if key.isdigit()))
            while part in node:
                part = str(int(part) + 1)
        if last:
            node[part] = value
            return
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None and child != "":
                raise FormError(name)
            child = {}
            node[part] = child
        node = child


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(item) for key, item in value.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
