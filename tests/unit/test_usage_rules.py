"""Pure validation of usage events (core.usage.ingest), with Hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from core.usage.ingest import (
    SUBSCRIPTION_MISMATCH,
    UNKNOWN_ACCOUNT,
    UNKNOWN_SUBSCRIPTION,
    GoodEvent,
    parse_quantity,
    parse_timestamp,
    validate_batch,
    validate_event,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ACCOUNTS = {"ACME-1": 1}
decode = msgspec.json.Decoder(float_hook=Decimal).decode


def ev(**over: object) -> dict:
    base = {
        "id": "e-1",
        "billing_account": "ACME-1",
        "metric": "api.calls",
        "quantity": "1",
        "timestamp": "2026-11-22T11:00:00Z",
    }
    return base | over


quantities = st.decimals(
    min_value=0, max_value=Decimal("99999999999999.999999"), places=6, allow_nan=False
)


@given(quantities)
def test_decimal_strings_and_json_numbers_round_trip_exactly(q: Decimal) -> None:
    text = format(q, "f")
    assert parse_quantity(text) == q
    # The same literal as a JSON number, decoded as the API does: exact, no float.
    assert parse_quantity(decode(text.encode())) == q


@given(st.integers(min_value=-(10**20), max_value=-1))
def test_negative_quantities_are_refused(n: int) -> None:
    assert parse_quantity(n) is None
    assert parse_quantity(str(n)) is None


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_binary_floats_are_never_accepted(f: float) -> None:
    assert parse_quantity(f) is None


def test_quantity_edge_cases() -> None:
    assert parse_quantity(True) is None
    assert parse_quantity("1e3") is None
    assert parse_quantity("0.1234567") is None
    assert parse_quantity(decode(b"1e3")) is None  # exponent literal: an int-valued Decimal
    assert parse_quantity(decode(b"0.1234567")) is None
    assert parse_quantity(" 1") is None
    assert parse_quantity("0") == 0
    assert parse_quantity(decode(b"0.1")) == Decimal("0.1")


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (naive bounds: hypothesis API)
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([UTC]),
    )
)
def test_timestamps_are_accepted_up_to_five_minutes_ahead(at: datetime) -> None:
    result = parse_timestamp(at.isoformat(), NOW)
    if at - NOW > timedelta(minutes=5):
        assert isinstance(result, str)
        assert "future" in result
    else:
        assert result == at


def test_timestamp_needs_a_timezone_and_rfc3339_shape() -> None:
    assert isinstance(parse_timestamp("2026-11-22T11:00:00", NOW), str)
    assert isinstance(parse_timestamp("2026-11-22", NOW), str)
    assert isinstance(parse_timestamp(1732272000, NOW), str)
    assert parse_timestamp("2026-11-22T13:00:00+02:00", NOW) == datetime(
        2026, 11, 22, 11, tzinfo=UTC
    )


@given(st.from_regex(r"[a-z][a-z0-9_.]{0,63}", fullmatch=True))
def test_valid_metrics_pass(metric: str) -> None:
    assert isinstance(validate_event(0, ev(metric=metric), NOW, ACCOUNTS), GoodEvent)


@given(
    st.text(max_size=80).filter(
        lambda m: not __import__("re").fullmatch(r"[a-z][a-z0-9_.]{0,63}", m)
    )
)
def test_invalid_metrics_fail(metric: str) -> None:
    result = validate_event(0, ev(metric=metric), NOW, ACCOUNTS)
    assert not isinstance(result, GoodEvent)
    assert "metric" in result[1]


def test_account_rules() -> None:
    assert validate_event(0, ev(billing_account="OTHER"), NOW, ACCOUNTS) == ("e-1", UNKNOWN_ACCOUNT)
    subs = {"7": "ACME-1"}
    by_sub = validate_event(0, ev(subscription=7, billing_account=None), NOW, ACCOUNTS, subs)
    assert isinstance(by_sub, GoodEvent)
    assert by_sub.account_code == "ACME-1"
    assert isinstance(validate_event(0, ev(subscription="7"), NOW, ACCOUNTS, subs), GoodEvent)
    assert validate_event(0, ev(subscription="8"), NOW, ACCOUNTS, subs) == (
        "e-1",
        UNKNOWN_SUBSCRIPTION,
    )
    assert validate_event(0, ev(subscription="s1"), NOW, ACCOUNTS, subs)[1].startswith(
        "subscription must be"
    )
    assert validate_event(0, ev(subscription=True), NOW, ACCOUNTS, subs)[1].startswith(
        "subscription must be"
    )
    other = {"7": "OTHER"}
    assert validate_event(0, ev(subscription=7), NOW, ACCOUNTS, other) == (
        "e-1",
        SUBSCRIPTION_MISMATCH,
    )
    assert validate_event(0, ev(id=""), NOW, ACCOUNTS)[0] is None
    assert validate_event(0, ev(id="x" * 129), NOW, ACCOUNTS)[0] is None
    assert isinstance(validate_event(0, ev(id="x" * 128), NOW, ACCOUNTS), GoodEvent)


def test_properties_limit() -> None:
    assert isinstance(validate_event(0, ev(properties={"a": "x" * 4000}), NOW), GoodEvent)
    assert "4 KB" in validate_event(0, ev(properties={"a": "x" * 4100}), NOW)[1]
    assert "object" in validate_event(0, ev(properties=[1]), NOW)[1]


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=30), st.data())
def test_batch_partitions_every_event_and_keeps_first_of_each_id(ids, data) -> None:
    events = [ev(id=i, quantity=data.draw(st.sampled_from(["1", "-1", "2.5"]))) for i in ids]
    out = validate_batch(events, NOW, ACCOUNTS)
    indexes = [g.index for g in out.good] + list(out.rejected) + list(out.repeats)
    assert sorted(indexes) == list(range(len(events)))
    good_ids = [g.event_id for g in out.good]
    assert len(good_ids) == len(set(good_ids))
    for g in out.good:  # the first valid occurrence of its id
        assert all(events[j]["id"] != g.event_id or j in out.rejected for j in range(g.index))
