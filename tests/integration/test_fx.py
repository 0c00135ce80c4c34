"""Exchange rates: ECB import (idempotent, all-or-nothing), manual entry, and the rate an
invoice freezes at finalization, which later rate changes never alter."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from core.errors import ValidationFailed
from core.fx.services import add_manual_rate, find_rate, import_ecb
from core.fx.tables import ExchangeRate
from core.invoicing import finalization as fin
from core.invoicing.finalization import finalize_many
from core.invoicing.tables import Invoice
from tests.integration.finance_support import (
    APPROVER,
    CREATOR,
    assert_books_balanced,
    bulk_drafts,
    entity_account,
)
from tests.unit.test_fx_rates import ecb

DAILY = ecb(
    "<Cube time='2026-03-09'><Cube currency='USD' rate='1.0842'/>"
    "<Cube currency='GBP' rate='0.8512'/><Cube currency='JPY' rate='161.52'/></Cube>"
)


async def test_ecb_import_is_idempotent_and_all_or_nothing(db) -> None:
    first = await import_ecb(DAILY, APPROVER)
    assert (first.days, first.inserted, first.already_present) == (1, 3, 0)
    again = await import_ecb(DAILY, APPROVER)
    assert (again.inserted, again.already_present) == (0, 3)
    assert await ExchangeRate.count() == 3

    broken = ecb(
        "<Cube time='2026-03-10'><Cube currency='USD' rate='1.09'/>"
        "<Cube currency='CHF' rate='oops'/></Cube>"
    )
    with pytest.raises(ValidationFailed) as info:
        await import_ecb(broken, APPROVER)
    assert "CHF" in info.value.errors["file"]
    assert await ExchangeRate.count() == 3  # nothing of the bad file was stored

    quote = await find_rate("USD", "GBP", date(2026, 3, 10))
    assert quote is not None
    assert quote.source == "ecb:cross-EUR"
    assert await find_rate("USD", "EUR", date(2026, 3, 20)) is None  # too old


async def test_manual_rate_validation(db) -> None:
    with pytest.raises(ValidationFailed) as info:
        await add_manual_rate("EUR", "EUR", "1", date(2026, 3, 9), APPROVER)
    assert "quote" in info.value.errors
    with pytest.raises(ValidationFailed) as info:
        await add_manual_rate("EUR", "XYZ", "1", date(2026, 3, 9), APPROVER)
    assert "quote" in info.value.errors
    for bad in ("abc", "0", "-2", "1.123456789012"):
        with pytest.raises(ValidationFailed) as info:
            await add_manual_rate("EUR", "USD", bad, date(2026, 3, 9), APPROVER)
        assert "rate" in info.value.errors
    assert await ExchangeRate.count() == 0


async def test_rate_is_frozen_at_finalization_and_never_changes(db) -> None:
    entity, account = await entity_account(currency_code="USD", code="US-CUST")
    first, second = await bulk_drafts(account, entity, 2, currency_code="USD")

    held = await finalize_many([first], CREATOR, issue_date=date(2026, 3, 10))
    assert held.held_codes == {first: fin.FX_MISSING}
    assert "no USD→EUR exchange rate" in held.held[first]

    await import_ecb(DAILY, APPROVER)  # 1 EUR = 1.0842 USD on 9 March
    report = await finalize_many([first], CREATOR, issue_date=date(2026, 3, 10))
    assert first in report.finalized
    frozen = (
        await Invoice.select(
            Invoice.functional_currency, Invoice.fx_rate, Invoice.fx_source, Invoice.fx_date
        )
        .where(Invoice.id == first)
        .first()
    )
    expected = (Decimal(1) / Decimal("1.0842")).quantize(Decimal("1e-10"))
    assert frozen == {
        "functional_currency": "EUR",
        "fx_rate": expected,
        "fx_source": "ecb:inverse",
        "fx_date": date(2026, 3, 9),
    }

    # A manual correction for the same day wins for later invoices only.
    await add_manual_rate("USD", "EUR", "0.9", date(2026, 3, 9), APPROVER)
    report = await finalize_many([second], CREATOR, issue_date=date(2026, 3, 10))
    later = await Invoice.select(Invoice.fx_rate, Invoice.fx_source).where(Invoice.id == second)
    assert later == [{"fx_rate": Decimal("0.9"), "fx_source": "manual"}]
    unchanged = await Invoice.select(Invoice.fx_rate).where(Invoice.id == first).first()
    assert unchanged["fx_rate"] == expected
    await assert_books_balanced("USD")
