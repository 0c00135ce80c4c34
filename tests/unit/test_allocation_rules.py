from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from core.payments.allocation import AllocationRequest, check_allocations


@given(
    st.integers(min_value=1, max_value=10**9),
    st.lists(st.tuples(st.integers(1, 10**8), st.integers(1, 10**8)), max_size=8),
)
def test_allocations_never_exceed_the_payment_or_a_balance(
    payment: int, invoices: list[tuple[int, int]]
) -> None:
    balances = {i: balance for i, (balance, _) in enumerate(invoices)}
    requests = [AllocationRequest(i, amount) for i, (_, amount) in enumerate(invoices)]
    try:
        unapplied = check_allocations(payment, requests, balances)
    except ValidationFailed:
        over_balance = any(r.amount_minor > balances[r.invoice_id] for r in requests)
        assert over_balance or sum(r.amount_minor for r in requests) > payment
    else:
        assert 0 <= unapplied <= payment
        assert unapplied + sum(r.amount_minor for r in requests) == payment
        assert all(r.amount_minor <= balances[r.invoice_id] for r in requests)


@pytest.mark.parametrize(
    ("payment", "requests", "field"),
    [
        (0, [], "amount"),
        (100, [AllocationRequest(1, 0)], "allocations"),
        (100, [AllocationRequest(1, 50), AllocationRequest(1, 10)], "allocations"),
        (100, [AllocationRequest(2, 50)], "allocations"),
    ],
)
def test_bad_allocations_are_refused(
    payment: int, requests: list[AllocationRequest], field: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        check_allocations(payment, requests, {1: 100})
    assert field in info.value.errors
