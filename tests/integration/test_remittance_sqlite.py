"""The embedded default (SQLite): a statement imports and auto-applies through the
row-by-row path, a duplicate is refused, and the books balance."""

from __future__ import annotations

import pytest

from core.db import bind_engine, make_engine, migrate
from core.errors import ValidationFailed
from core.invoicing.tables import Invoice
from core.ledger.posting import ensure_chart
from core.remittance import services
from core.remittance.tables import KnownPayer, StatementLine
from tests.integration.cash_support import assert_books, open_invoice
from tests.integration.factories import SYSTEM, billing_account
from tests.integration.test_remittance_import import IBAN, camt

pytestmark = pytest.mark.sqlite


async def test_import_on_sqlite(databases, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'remit.sqlite3'}"
    migrate(url)
    bind_engine(make_engine(url))
    try:
        await ensure_chart()
        account = await billing_account("EUR")
        a, b = await open_invoice(account, "10.00"), await open_invoice(account, "20.00")
        numbers = {
            r["id"]: r["number"]
            for r in await Invoice.select(Invoice.id, Invoice.number).where(
                Invoice.id.is_in([a, b])
            )
        }
        data = camt(
            "SQLITE-1",
            [
                ("10.00", numbers[a], "Customer AG", IBAN),
                ("20.00", "", "Customer AG", IBAN),  # known payer by now + amount
                ("5.00", "?", "Nobody", "GB00X"),
            ],
        )
        result = await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
        assert result.auto_applied == 2
        statuses = [
            r["status"]
            for r in await StatementLine.select(StatementLine.status).order_by(
                StatementLine.line_no
            )
        ]
        assert statuses[:2] == ["auto_applied", "auto_applied"]
        assert await KnownPayer.count() >= 1
        with pytest.raises(ValidationFailed):
            await services.import_statement(fmt="camt053", data=data, actor=SYSTEM)
        await assert_books("EUR")
    finally:
        bind_engine(databases.it)
