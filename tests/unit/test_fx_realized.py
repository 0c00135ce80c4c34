"""Realized FX difference (pure): rounded once, so a payment split into parts realizes
the whole's gain/loss within one minor unit per part; its two journal lines balance and
go the right way (a loss debits FX gain/loss, a gain credits it)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.fx.rates import realized_fx_minor
from core.fx.realized import realized_fx_lines
from core.ledger import accounts as acct
from core.ledger.rules import check_balanced

rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=6)
parts = st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=20)
pairs = st.sampled_from([("EUR", "USD"), ("USD", "JPY"), ("JPY", "USD"), ("KWD", "EUR")])


@given(parts, pairs, rates, rates)
def test_parts_realize_the_whole_within_one_minor_unit_per_part(
    amounts: list[int], pair: tuple[str, str], booked: Decimal, settled: Decimal
) -> None:
    doc, functional = pair
    whole = realized_fx_minor(sum(amounts), doc, functional, booked, settled)
    split = sum(realized_fx_minor(a, doc, functional, booked, settled) for a in amounts)
    assert abs(split - whole) <= len(amounts)
    if len(amounts) == 1:
        assert split == whole


@given(st.integers(min_value=0, max_value=10**12), pairs, rates, rates)
def test_sign_follows_the_rate_and_lines_balance(
    amount: int, pair: tuple[str, str], booked: Decimal, settled: Decimal
) -> None:
    doc, functional = pair
    diff = realized_fx_minor(amount, doc, functional, booked, settled)
    if settled > booked:
        assert diff >= 0
    elif settled < booked:
        assert diff <= 0
    else:
        assert diff == 0
    lines = realized_fx_lines(diff, 7)
    if diff == 0:
        assert lines == []
        return
    assert check_balanced(lines) == abs(diff)
    fx = next(line for line in lines if line.account == acct.FX_GAIN_LOSS)
    assert (fx.credit_minor if diff > 0 else fx.debit_minor) == abs(diff)
    reval = next(line for line in lines if line.account == acct.AR_FX_REVALUATION)
    assert reval.billing_account_id == 7


def test_examples() -> None:
    # 1,000.00 EUR booked at 1.10 USD and paid at 1.05: a loss of exactly 50.00 USD.
    assert realized_fx_minor(100000, "EUR", "USD", Decimal("1.10"), Decimal("1.05")) == -5000
    assert realized_fx_minor(100000, "EUR", "USD", Decimal("1.10"), Decimal("1.15")) == 5000
    # JPY has no minor unit: 0.01 USD x 0.5 = 0.005 JPY -> 0; 3.00 USD x 0.5 = 1.5 -> 2.
    assert realized_fx_minor(1, "USD", "JPY", Decimal("150"), Decimal("150.5")) == 0
    assert realized_fx_minor(300, "USD", "JPY", Decimal("150"), Decimal("150.5")) == 2
    assert realized_fx_minor(5000, "EUR", "EUR", Decimal(1), Decimal(1)) == 0
