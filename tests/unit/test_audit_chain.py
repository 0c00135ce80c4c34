from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from core.audit.chain import GENESIS_HASH, canonical_data, event_hash, verify


def make_chain(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    previous = GENESIS_HASH
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        row: dict[str, Any] = {
            "id": i + 1,
            "occurred_at": start + timedelta(seconds=i),
            "actor_type": "customer",
            "actor_id": str(i % 3),
            "on_behalf_of": "",
            "action": "invoice.viewed",
            "object_type": "invoice",
            "object_id": str(100 + i),
            "reason_code": "",
            "ip": "127.0.0.1",
            "user_agent": "test",
            "data": canonical_data({"n": i}),
        }
        row["prev_hash"] = previous
        row["hash"] = previous = event_hash(previous, row)
        rows.append(row)
    return rows


def test_an_intact_chain_verifies() -> None:
    report = verify(make_chain(10))
    assert report.ok
    assert report.checked == 10


@given(st.integers(min_value=0, max_value=9), st.sampled_from(["action", "actor_id", "data", "ip"]))
def test_editing_any_field_of_any_row_is_detected(index: int, field: str) -> None:
    rows = make_chain(10)
    rows[index][field] = rows[index][field] + "x"
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_id == index + 1
    assert report.problem == "content does not match its hash"


@given(st.integers(min_value=0, max_value=8))
def test_deleting_a_row_is_detected(index: int) -> None:
    rows = make_chain(10)
    del rows[index]
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_id == index + 2
    assert report.problem == "link to previous event broken"


def test_rehashing_an_edited_row_still_breaks_the_next_link() -> None:
    rows = make_chain(5)
    rows[2]["action"] = "invoice.deleted"
    rows[2]["hash"] = event_hash(rows[2]["prev_hash"], rows[2])
    report = verify(rows)
    assert not report.ok
    assert report.first_bad_id == 4


def test_verifying_in_chunks_matches_verifying_at_once() -> None:
    rows = make_chain(12)
    first = verify(rows[:5])
    second = verify(rows[5:], first.last_hash, first.checked)
    assert second.ok
    assert second.checked == 12
    assert second.last_hash == verify(rows).last_hash
