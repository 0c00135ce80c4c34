"""Pure payment rules: attempt validation, approval thresholds, settlement split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.idempotency.store import check_key, fingerprint
from core.payments.gateway import idempotency_key
from core.payments.rules import (
    OpenInvoice,
    approval_required,
    check_items,
    nearest_threshold,
    settlement_split,
)

amounts = st.integers(min_value=0, max_value=10**9)


def inv(i: int, balance: int, currency: str = "USD", in_flight: int = 0) -> OpenInvoice:
    return OpenInvoice(i, f"INV-{i}", currency, balance, in_flight)


def test_check_items_accepts_parts_and_totals() -> None:
    invoices = {1: inv(1, 1000), 2: inv(2, 500, in_flight=100)}
    assert check_items([(1, 250), (2, 400)], invoices) == ("USD", 650)


@pytest.mark.parametrize(
    ("items", "field", "words"),
    [
        ([], "invoices", "at least one"),
        ([(1, 0)], "amount_1", "above zero"),
        ([(1, 1001)], "amount_1", "exceeds the open balance"),
        ([(2, 401)], "amount_2", "in progress"),
        ([(1, 1), (3, 1)], "currency", "mixes currencies"),
        ([(9, 1)], "amount_9", "not open"),
        ([(1, 1), (1, 1)], "invoices", "only once"),
    ],
)
def test_check_items_refusals(items: list[tuple[int, int]], field: str, words: str) -> None:
    invoices = {1: inv(1, 1000), 2: inv(2, 500, in_flight=100), 3: inv(3, 10, "EUR")}
    with pytest.raises(ValidationFailed) as exc:
        check_items(items, invoices)
    assert words in exc.value.errors[field]


@given(st.lists(st.tuples(amounts, amounts), min_size=1, max_size=8))
def test_accepted_items_never_exceed_what_is_available(pairs: list[tuple[int, int]]) -> None:
    invoices = {i: inv(i, balance) for i, (balance, _) in enumerate(pairs)}
    items = [(i, amount) for i, (_, amount) in enumerate(pairs)]
    try:
        _, total = check_items(items, invoices)
    except ValidationFailed:
        assert any(a <= 0 or a > invoices[i].balance_minor for i, a in items)
        return
    assert all(0 < a <= invoices[i].balance_minor for i, a in items)
    assert total == sum(a for _, a in items)


def test_nearest_threshold_walks_up_the_tree() -> None:
    thresholds = {1: 5000, 2: None, 3: 100}
    assert nearest_threshold("/1/2/", thresholds) == 5000
    assert nearest_threshold("/1/2/3/", thresholds) == 100
    assert nearest_threshold("/7/", thresholds) is None


@given(amounts, st.lists(st.one_of(st.none(), amounts), max_size=5))
def test_approval_is_required_exactly_above_the_strictest_threshold(
    amount: int, thresholds: list[int | None]
) -> None:
    applicable = [t for t in thresholds if t is not None]
    assert approval_required(amount, thresholds) == (bool(applicable) and amount > min(applicable))


@given(
    st.lists(
        st.tuples(st.integers(1, 20), st.integers(1, 10**7)), max_size=10, unique_by=lambda x: x[0]
    ),
    st.dictionaries(st.integers(1, 20), st.integers(0, 10**7)),
)
def test_settlement_never_allocates_beyond_balances_and_loses_nothing(
    items: list[tuple[int, int]], balances: dict[int, int]
) -> None:
    allocations, unapplied = settlement_split(items, balances)
    assert sum(a for _, a in allocations) + unapplied == sum(a for _, a in items)
    assert unapplied >= 0
    for invoice_id, applied in allocations:
        assert 0 < applied <= balances[invoice_id]
        assert applied <= dict(items)[invoice_id]


def test_keys() -> None:
    assert idempotency_key(42, "charge-1") == "attempt-42-charge-1"
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert check_key("  abc ") == "abc"
    for bad in ("", "x" * 256, "clé", "a\nb", None):
        with pytest.raises(ValidationFailed):
            check_key(bad)
