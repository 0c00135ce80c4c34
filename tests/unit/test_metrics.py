"""Billable metric aggregation: pure rules, with Hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.billing.metrics import (
    Event,
    Metric,
    aggregate,
    default_metric,
    in_period,
    project,
    select,
)

T0 = datetime(2026, 2, 1, tzinfo=UTC)

quantities = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False)
events_st = st.lists(
    st.builds(
        Event,
        name=st.sampled_from(["api", "api", "storage"]),
        quantity=quantities,
        occurred_at=st.integers(0, 28 * 24 * 3600).map(lambda s: T0 + timedelta(seconds=s)),
        properties=st.fixed_dictionaries(
            {},
            optional={
                "region": st.sampled_from(["eu", "us"]),
                "user": st.sampled_from(["u1", "u2", "u3", "u4"]),
                "tier": st.sampled_from([1, 2, "2"]),
            },
        ),
        id=st.integers(1, 10**9),
    ),
    max_size=40,
    unique_by=lambda e: e.id,  # event ids are unique (the table's key)
)
metrics_st = st.builds(
    Metric,
    code=st.just("m"),
    event_name=st.just("api"),
    aggregation=st.sampled_from(["sum", "count", "max", "last"]),
    filters=st.sampled_from([{}, {"region": "eu"}, {"region": "us", "tier": "2"}]),
)


@given(events_st, st.integers(0, 40), st.sampled_from([{}, {"region": "eu"}]))
def test_sum_is_additive_over_any_split(events, cut, filters) -> None:
    metric = Metric("m", "api", "sum", filters=filters)
    left, right = events[:cut], events[cut:]
    assert aggregate(metric, events) == aggregate(metric, left) + aggregate(metric, right)


@given(events_st, st.integers(0, 40))
def test_count_is_additive_and_max_is_the_max_of_the_parts(events, cut) -> None:
    left, right = events[:cut], events[cut:]
    count = Metric("c", "api", "count")
    peak = Metric("p", "api", "max")
    assert aggregate(count, events) == aggregate(count, left) + aggregate(count, right)
    assert aggregate(peak, events) == max(aggregate(peak, left), aggregate(peak, right))


@given(events_st, st.integers(0, 40))
def test_unique_count_is_subadditive_and_at_most_the_count(events, cut) -> None:
    users = Metric("u", "api", "unique_count", property="user")
    count = Metric("c", "api", "count")
    left, right = events[:cut], events[cut:]
    whole = aggregate(users, events)
    assert whole <= aggregate(users, left) + aggregate(users, right)
    assert max(aggregate(users, left), aggregate(users, right)) <= whole
    assert whole <= aggregate(count, events)
    assert whole == len(
        {e.properties["user"] for e in events if e.name == "api" and "user" in e.properties}
    )


@given(events_st, metrics_st)
def test_filters_select_a_subset_and_order_does_not_matter(events, metric) -> None:
    chosen = select(metric, events)
    assert all(e in events for e in chosen)
    assert all(e.name == "api" for e in chosen)
    for key, value in metric.filters.items():
        assert all(str(e.properties[key]) == value for e in chosen)
    assert aggregate(metric, list(reversed(events))) == aggregate(metric, events)
    unfiltered = Metric("m", "api", "sum")
    if metric.aggregation == "sum":
        assert aggregate(metric, events) <= aggregate(unfiltered, events)


@given(events_st)
def test_last_is_the_latest_event(events) -> None:
    last = Metric("l", "storage", "last")
    chosen = [e for e in events if e.name == "storage"]
    if not chosen:
        assert aggregate(last, events) == 0
        return
    latest = max(e.occurred_at for e in chosen)
    candidates = [e for e in chosen if e.occurred_at == latest]
    assert aggregate(last, events) == max(candidates, key=lambda e: e.id).quantity


def test_examples_and_empty_values() -> None:
    ev = [
        Event("api", Decimal("2.5"), T0, {"region": "eu", "user": "a"}, 1),
        Event("api", Decimal(4), T0 + timedelta(hours=1), {"region": "us", "user": "a"}, 2),
        Event("api", Decimal(1), T0 + timedelta(hours=2), {"region": "eu", "user": "b"}, 3),
    ]
    assert aggregate(default_metric("api"), ev) == Decimal("7.5")
    assert aggregate(Metric("x", "api", "count", filters={"region": "eu"}), ev) == 2
    assert aggregate(Metric("x", "api", "max"), ev) == 4
    assert aggregate(Metric("x", "api", "unique_count", property="user"), ev) == 2
    assert aggregate(Metric("x", "api", "last"), ev) == 1
    for kind in ("sum", "count", "max", "last"):
        assert aggregate(Metric("x", "none", kind), ev) == 0
    assert in_period(ev, T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == [ev[1]]


def test_bad_metrics_are_refused() -> None:
    with pytest.raises(ValueError, match="aggregation"):
        Metric("x", "api", "avg")
    with pytest.raises(ValueError, match="property"):
        Metric("x", "api", "unique_count")


@given(quantities, st.integers(1, 10**7), st.integers(1, 10**7))
def test_projection_never_lowers_usage_and_is_exact_at_the_end(qty, elapsed, total) -> None:
    elapsed = min(elapsed, total)
    for kind in ("sum", "count"):
        projected = project(kind, qty, elapsed, total)
        assert projected >= qty
        assert project(kind, qty, total, total) == qty
    for kind in ("max", "unique_count", "last"):
        assert project(kind, qty, elapsed, total) == qty


def test_projection_example() -> None:
    assert project("sum", Decimal(100), 10, 30) == 300
    with pytest.raises(ValueError, match="period"):
        project("sum", Decimal(1), 1, 0)
