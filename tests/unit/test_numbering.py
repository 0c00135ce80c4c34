"""Document number formats: the default renders ``INV-DE-2026-000123``; a valid format
renders distinct numbers for distinct sequences (and series); bad formats are refused
with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.invoicing.rules import (
    DEFAULT_NUMBER_FORMAT,
    NumberFormatError,
    approval_required,
    render_number,
    validate_number_format,
)

FORMATS = [
    DEFAULT_NUMBER_FORMAT,
    "{entity}/{doc}/{yy}/{seq:04}",
    "{doc}{entity}{jurisdiction}{year}{seq}",
    "{doc}-{entity}-{year}-{seq:08}",
]
codes = st.sampled_from(["DE", "US", "FR1"])


def test_default_format() -> None:
    number = render_number(
        DEFAULT_NUMBER_FORMAT, doc="INV", entity="DE", jurisdiction="DE", year=2026, sequence=123
    )
    assert number == "INV-DE-2026-000123"


@given(
    st.sampled_from(FORMATS),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=1, max_value=10**9),
    st.integers(min_value=2000, max_value=2099),
)
def test_distinct_sequences_give_distinct_numbers(fmt: str, a: int, b: int, year: int) -> None:
    validate_number_format(fmt)

    def number(seq: int) -> str:
        return render_number(
            fmt, doc="INV", entity="DE", jurisdiction="DE", year=year, sequence=seq
        )

    assert (number(a) == number(b)) == (a == b)


@given(st.integers(min_value=1, max_value=999_999), st.integers(min_value=1, max_value=999_999))
def test_padded_numbers_sort_like_their_sequences(a: int, b: int) -> None:
    def number(seq: int) -> str:
        return render_number(
            DEFAULT_NUMBER_FORMAT,
            doc="INV",
            entity="DE",
            jurisdiction="DE",
            year=2026,
            sequence=seq,
        )

    assert (number(a) < number(b)) == (a < b)


@given(codes, codes, st.sampled_from(["INV", "CN"]), st.integers(min_value=1, max_value=99))
def test_series_never_collide_under_the_default_format(
    e1: str, e2: str, doc: str, seq: int
) -> None:
    one = render_number(
        DEFAULT_NUMBER_FORMAT, doc="INV", entity=e1, jurisdiction="", year=2026, sequence=seq
    )
    two = render_number(
        DEFAULT_NUMBER_FORMAT, doc=doc, entity=e2, jurisdiction="", year=2026, sequence=seq
    )
    assert (one == two) == (e1 == e2 and doc == "INV")


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("", "1 to 64"),
        ("{doc}-{entity}-{year}", "seq"),
        ("{doc}-{seq}", "entity, year"),
        ("{doc}-{entity}-{year}-{seq}-{seq}", "exactly once"),
        ("{doc}-{entity}-{year}-{counter}", "unknown token"),
        ("{doc}-{entity}-{year:4}-{seq}", "only {seq} takes a width"),
        ("{doc} {entity}-{year}-{seq}", "literal text"),
    ],
)
def test_bad_formats_are_refused(fmt: str, message: str) -> None:
    with pytest.raises(NumberFormatError, match=message):
        validate_number_format(fmt)


@given(
    st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=10**12)
)
def test_approval_threshold_is_inclusive_and_symmetric(total: int, threshold: int) -> None:
    needs = approval_required(
        total_functional_minor=total, threshold_minor=threshold, account_flag=False
    )
    assert bool(needs) == (abs(total) >= threshold)
    assert (
        approval_required(total_functional_minor=total, threshold_minor=None, account_flag=False)
        == ""
    )
    assert approval_required(total_functional_minor=0, threshold_minor=None, account_flag=True)
