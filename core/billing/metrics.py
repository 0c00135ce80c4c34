"""Billable metrics: pure aggregation of usage events into a billed quantity.

Rules
-----
* A metric aggregates the events of one name (``event_name``) over a billing period
  ``[start, end)`` (by the event's ``occurred_at``), after its **filters**: an event counts
  only if its properties carry every filter value (compared as strings, so ``{"region":
  "eu"}`` matches ``"eu"`` and a filter ``{"tier": "2"}`` matches ``2``).
* Aggregations:
  - ``sum``: the sum of the quantities (0 for no events); additive over any split of the
    events.
  - ``count``: the number of events.
  - ``max``: the largest quantity (0 for no events), e.g. peak seats.
  - ``unique_count``: the number of distinct values of ``property`` (events without it do
    not count), e.g. active users.
  - ``last``: the quantity of the latest event by ``occurred_at`` (ties: the larger event
    id wins, i.e. the one received later), 0 for no events, e.g. storage at period end.
* Quantities are ``Decimal``; no float anywhere. The SQL aggregation in
  ``core.billing.usage_queries`` computes the same values in PostgreSQL; tests compare both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

AGGREGATIONS: Final = ("sum", "count", "max", "unique_count", "last")
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class Metric:
    code: str
    event_name: str
    aggregation: str = "sum"
    property: str = ""
    filters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {self.aggregation!r}"
            )
        if self.aggregation == "unique_count" and not self.property:
            raise ValueError("a unique count needs the property to count")
        object.__setattr__(self, "filters", {str(k): str(v) for k, v in dict(self.filters).items()})


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    quantity: Decimal
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0


def default_metric(code: str) -> Metric:
    """A usage price naming no defined metric: the sum of the events of that name."""
    return Metric(code=code, event_name=code)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def matches(metric: Metric, event: Event) -> bool:
    """The event has the metric's name and carries every filter value."""
    if event.name != metric.event_name:
        return False
    props = event.properties
    return all(k in props and _text(props[k]) == v for k, v in metric.filters.items())


def select(metric: Metric, events: Iterable[Event]) -> list[Event]:
    return [e for e in events if matches(metric, e)]


def aggregate(metric: Metric, events: Iterable[Event]) -> Decimal:
    """The billed quantity of ``events`` (already limited to the period) for ``metric``."""
    chosen = select(metric, events)
    kind = metric.aggregation
    if kind == "sum":
        return sum((e.quantity for e in chosen), _ZERO)
    if kind == "count":
        return Decimal(len(chosen))
    if kind == "max":
        return max((e.quantity for e in chosen), default=_ZERO)
    if kind == "unique_count":
        values = {
            _text(e.properties[metric.property]) for e in chosen if metric.property in e.properties
        }
        return Decimal(len(values))
    if not chosen:  # last
        return _ZERO
    return max(chosen, key=lambda e: (e.occurred_at, e.id)).quantity


def in_period(events: Iterable[Event], start: datetime, end: datetime) -> list[Event]:
    """Events with ``start <= occurred_at < end``."""
    return [e for e in events if start <= e.occurred_at < end]


_PROJECT_PLACES: Final = Decimal("0.000001")


def project(aggregation: str, quantity: Decimal, elapsed: int, total: int) -> Decimal:
    """The quantity expected at the end of a period of ``total`` seconds, ``elapsed`` of
    which are over. Sums and counts grow with time: linear extrapolation (rounded half-even
    to 6 decimals). A maximum, a unique count or a last value is what it is so far."""
    if total <= 0 or elapsed < 0:
        raise ValueError("a period must last and have started")
    if aggregation not in ("sum", "count") or elapsed >= total:
        return quantity
    if elapsed == 0:
        return quantity
    return (quantity * total / elapsed).quantize(_PROJECT_PLACES)
