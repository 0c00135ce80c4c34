"""The matching engine's rules (pure): properties over generated invoices and lines,
and the noise it undoes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.remittance.matching import (
    InvoiceIndex,
    Line,
    MatchConfig,
    OpenInvoice,
    RefToken,
    Tolerance,
    config_from_dict,
    match_line,
    match_lines,
    normalize_name,
    reference_tokens,
)


def invoice(n: int, balance: int, account: int = 1, due: int = 1) -> OpenInvoice:
    return OpenInvoice(n, f"INV-DE-2026-{n:06d}", account, "EUR", balance, date(2026, 1, due))


invoices_st = st.lists(
    st.tuples(st.integers(1, 200_000), st.integers(1, 5)),  # balance, account
    min_size=1,
    max_size=40,
).map(lambda rows: [invoice(n + 1, b, a, 1 + n % 28) for n, (b, a) in enumerate(rows)])


def line_st(count: int) -> st.SearchStrategy[Line]:
    return st.builds(
        lambda key, amount, refs, noise, payer: Line(
            key,
            amount,
            "EUR",
            " ".join(f"INV-DE-2026-{r:06d}" for r in refs) + noise,
            "",
            f"DE{payer:020d}" if payer else "",
        ),
        st.integers(0, 10**6),
        st.integers(1, 400_000),
        st.lists(st.integers(1, count + 2), max_size=3),
        st.sampled_from(["", " thanks", " 2026", " O0I1"]),
        st.integers(0, 3),
    )


@settings(max_examples=150, deadline=None)
@given(invoices=invoices_st, data=st.data())
def test_applied_amounts_never_exceed_the_line_nor_any_open_balance(invoices, data) -> None:
    lines = data.draw(st.lists(line_st(len(invoices)), max_size=15))
    known = {f"acct:DE{p:020d}": [p] for p in (1, 2)}
    index = InvoiceIndex(invoices, known, {1: ["Acme GmbH"]})
    left = {inv.id: inv.balance_minor for inv in invoices}
    for outcome in match_lines(MatchConfig(), index, lines):
        s = outcome.suggestion
        if s is None:
            continue
        assert all(amount > 0 for _, amount in s.allocations)
        assert s.applied_minor + s.unapplied_minor == outcome.line.amount_minor
        assert 0 <= s.applied_minor <= outcome.line.amount_minor
        assert len({i for i, _ in s.allocations}) == len(s.allocations)
        assert 0 <= s.confidence <= 100
        for invoice_id, amount in s.allocations:
            assert amount <= left[invoice_id]
        if outcome.auto:
            assert len({index.invoices[i].billing_account_id for i, _ in s.allocations}) == 1
            for invoice_id, amount in s.allocations:
                left[invoice_id] -= amount
    assert left == index.remaining


@settings(max_examples=150, deadline=None)
@given(
    invoices=invoices_st, data=st.data(), wording=st.sampled_from(["{}", "Invoice {} paid", "{}/x"])
)
def test_exact_number_and_amount_equal_to_the_balance_is_always_matched(
    invoices, data, wording
) -> None:
    target = data.draw(st.sampled_from(invoices))
    index = InvoiceIndex(invoices)
    line = Line(0, target.balance_minor, "EUR", wording.format(target.number))
    outcome = match_line(MatchConfig(), index, line)
    assert outcome.auto
    assert outcome.suggestion is not None
    assert outcome.suggestion.allocations == ((target.id, target.balance_minor),)
    assert outcome.suggestion.rule == "reference_exact"


@given(
    difference=st.integers(0, 10_000),
    balance=st.integers(1, 10**7),
    absolute=st.integers(0, 1000),
    percent=st.decimals(0, 5, places=2),
)
def test_tolerance_holds_only_when_both_limits_hold(difference, balance, absolute, percent):
    allowed = Tolerance(absolute, percent).allows(difference, balance)
    expected = difference == 0 or (
        difference <= absolute and Decimal(difference) * 100 <= percent * balance
    )
    assert allowed == expected


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("INV-DE-2026-000123", RefToken("2026", "123")),
        ("inv-de-2O26-OOO123", RefToken("2026", "123")),  # OCR: O for 0
        ("INVDE2026000123", RefToken("2026", "123")),  # separators dropped
        ("Rechnung 2026-000I23 danke", RefToken("2026", "123")),  # I for 1, no prefix
        ("nr 000123", RefToken("", "123")),  # no prefix, no year
        ("INV-DE-2026-0001Z3", RefToken("2026", "123")),  # Z for 2
    ],
)
def test_reference_tokens_undo_ocr_noise_and_missing_parts(text, token) -> None:
    assert token in reference_tokens(text)


def test_noisy_references_are_matched_only_with_the_amount() -> None:
    invoices = [invoice(n, 1000 + n) for n in range(1, 500)]
    index = InvoiceIndex(invoices)
    typo = match_line(MatchConfig(), index, Line(0, 1123, "EUR", "INV-DE-2026-000132"))
    # "132" exists too, but only 123 has the amount (a transposition, one edit away)
    assert typo.auto
    assert typo.suggestion is not None
    assert typo.suggestion.allocations == ((123, 1123),)
    wrong_amount = match_line(MatchConfig(), index, Line(1, 77, "EUR", "INV-DE-2026-0OO123"))
    assert not wrong_amount.auto


def test_payer_rules_amount_and_subset_sum() -> None:
    invoices = [invoice(1, 5000, 7), invoice(2, 7000, 7), invoice(3, 11000, 7), invoice(4, 7000, 8)]
    index = InvoiceIndex(invoices, {"acct:DE01": [7]})
    one = match_line(MatchConfig(), index, Line(0, 11000, "EUR", "", "", "DE01"))
    assert one.auto
    assert one.suggestion is not None
    assert one.suggestion.rule == "amount_payer"
    bundle = match_line(MatchConfig(), index, Line(1, 16000, "EUR", "", "", "DE 01"))
    assert bundle.auto
    assert bundle.suggestion is not None
    assert sorted(bundle.suggestion.allocations) == [(1, 5000), (3, 11000)]
    unknown = match_line(MatchConfig(), index, Line(2, 16000, "EUR", "", "", "DE99"))
    assert not unknown.auto


def test_several_payments_to_one_invoice_and_overpayment() -> None:
    index = InvoiceIndex([invoice(1, 10_000)])
    first, second, third = match_lines(
        MatchConfig(),
        index,
        [
            Line(0, 4_000, "EUR", "INV-DE-2026-000001"),
            Line(1, 6_500, "EUR", "INV-DE-2026-000001"),
            Line(2, 100, "EUR", "INV-DE-2026-000001"),
        ],
    )
    assert first.auto
    assert second.auto
    assert second.suggestion is not None
    assert second.suggestion.allocations == ((1, 6_000),)
    assert second.suggestion.unapplied_minor == 500
    assert third.suggestion is None  # nothing left open


def test_configuration_is_validated() -> None:
    config = config_from_dict(
        {
            "rules": ["reference_exact"],
            "auto_apply_confidence": 95,
            "tolerances": {"JPY": {"absolute_minor": 100, "percent": "0.5"}},
        }
    )
    assert config.rules == ("reference_exact",)
    assert config.tolerance("JPY") == Tolerance(100, Decimal("0.5"))
    assert config.tolerance("EUR") == MatchConfig().tolerance("EUR")
    for bad in ({"rules": ["guess"]}, {"auto_apply_confidence": 0}, {"max_edit_distance": 5}):
        with pytest.raises(ValueError, match=r"."):
            config_from_dict(bad)


def test_names_are_normalized_without_legal_forms() -> None:
    assert normalize_name("Acme GmbH") == normalize_name("ACME gmbh.") == "ACME"
    assert normalize_name("Société Générale SA") == "SOCIETE GENERALE"


def test_invoices_of_two_accounts_are_never_applied_automatically() -> None:
    index = InvoiceIndex([invoice(1, 1000, account=1), invoice(2, 2000, account=2)])
    config = config_from_dict({"auto_apply_confidence": 50})
    outcome = match_line(
        config, index, Line(0, 3000, "EUR", "INV-DE-2026-000001 INV-DE-2026-000002")
    )
    assert outcome.suggestion is not None
    assert len(outcome.suggestion.allocations) == 2
    assert not outcome.auto
