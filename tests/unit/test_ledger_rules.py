from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ledger.rules import (
    LineSpec,
    UnbalancedEntryError,
    check_balanced,
    credit,
    debit,
    without_zero_lines,
)


def test_balanced_entry_returns_its_total() -> None:
    assert check_balanced([debit("1100", 1190), credit("4000", 1000), credit("2200", 190)]) == 1190


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "at least one line"),
        ([debit("1100", 100), credit("4000", 99)], "debits 100 != credits 99"),
        ([debit("1100", -5), credit("4000", -5)], "negative"),
        ([LineSpec("1100", 5, 5), credit("4000", 0)], "either a debit or a credit"),
        ([LineSpec("1100"), credit("4000", 0)], "either a debit or a credit"),
    ],
)
def test_unbalanced_or_malformed_entries_are_refused(lines: list[LineSpec], message: str) -> None:
    with pytest.raises(UnbalancedEntryError, match=message):
        check_balanced(lines)


amounts = st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=8)


@given(amounts, st.integers(min_value=-(10**6), max_value=10**6).filter(lambda d: d != 0))
def test_any_difference_between_debits_and_credits_is_refused(
    parts: list[int], difference: int
) -> None:
    total = sum(parts)
    lines = [debit("1100", p) for p in parts]
    if total + difference > 0:
        with pytest.raises(UnbalancedEntryError):
            check_balanced([*lines, credit("4000", total + difference)])
    assert check_balanced([*lines, credit("4000", total)]) == total


def test_zero_lines_are_dropped_before_checking() -> None:
    lines = without_zero_lines([debit("1100", 100), credit("4000", 100), credit("2200", 0)])
    assert [line.account for line in lines] == ["1100", "4000"]
