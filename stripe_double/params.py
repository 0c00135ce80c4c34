"""Reading request parameters with Stripe's validation messages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from stripe_double.errors import invalid, missing_param, unknown_param

_INT = re.compile(r"^-?\d+$")
_TRUE = {"true"}
_FALSE = {"false"}

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


class Params:
    """Parsed bracket-notation parameters of one request."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def only(self, allowed: Iterable[str]) -> Params:
        """Reject unknown top-level parameters, like Stripe does (``expand`` always allowed)."""
        permitted = {*allowed, "expand"}
        for name in self.data:
            if name not in permitted:
                raise unknown_param(name)
        return self

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def str(self, name: str, *, required: bool = False, max_length: int = 5000) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise missing_param(name)
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {name}", param=name)
        if required and value == "":
            raise invalid(
                f"You passed an empty string for '{name}'. We assume empty values are an "
                f"attempt to unset a parameter; however '{name}' cannot be unset. You should "
                f"remove '{name}' from your request or supply a non-empty value.",
                param=name,
                code="parameter_invalid_empty",
            )
        if len(value) > max_length:
            raise invalid(
                f"Invalid string: {value[:20]}...; must be at most {max_length} characters",
                param=name,
            )
        return value

    def int(self, name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise missing_param(name)
            return None
        if not isinstance(value, str) or not _INT.match(value):
            raise invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
        number = int(value)
        if minimum is not None and number < minimum:
            raise invalid(
                f"This value must be greater than or equal to {minimum}.",
                param=name,
                code="parameter_invalid_integer",
            )
        return number

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None or value == "":
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise invalid(f"Invalid boolean: {value}", param=name)

    def enum(self, name: str, values: Iterable[str], *, default: str | None = None) -> str | None:
        value = self.str(name)
        if value is None or value == "":
            return default
        options = list(values)
        if value not in options:
            raise invalid(
                f"Invalid {name}: must be one of {', '.join(options)}",
                param=name,
                code="parameter_invalid_string",
            )
        return value

    def dict(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None or value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid(f"Invalid object: {name}", param=name)
        return value

    def list(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            raise invalid(f"Invalid array: {name}", param=name)
        return value

    def sub(self, name: str, allowed: Iterable[str]) -> Params:
        """A nested hash (``card[...]``), with unknown keys refused as ``card[foo]``."""
        nested = self.dict(name)
        permitted = set(allowed)
        for key in nested:
            if key not in permitted:
                raise unknown_param(f"{name}[{key}]")
        return Params(nested)


def metadata(value: Any, existing: dict[str, str] | None = None) -> dict[str, str]:
    """Apply Stripe's metadata semantics: merge keys; "" unsets a key; ``metadata=""`` clears."""
    result = dict(existing or {})
    if value is None:
        return result
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid("Invalid metadata: must be a hash", param="metadata")
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid(f"Invalid metadata value for key {key}", param=f"metadata[{key}]")
        if len(key) > METADATA_KEY_MAX:
            raise invalid(
                f"Metadata keys can have up to {METADATA_KEY_MAX} characters.",
                param=f"metadata[{key}]",
            )
        if len(item) > METADATA_VALUE_MAX:
            raise invalid(
                f"Metadata values can have up to {METADATA_VALUE_MAX} characters.",
                param=f"metadata[{key}]",
            )
        if item == "":
            result.pop(key, None)
        else:
            result[key] = item
    if len(result) > METADATA_MAX_KEYS:
        raise invalid(f"Metadata can have up to {METADATA_MAX_KEYS} keys.", param="metadata")
    return result
