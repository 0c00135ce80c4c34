"""Matching accuracy on a generated 10,000-line bank file whose right answers are known
(typos in references, OCR noise, bundled payments, short and split payments,
overpayments, unknown payers): at least 95% of lines auto-applied, none wrongly."""

from __future__ import annotations

import time
from datetime import date

from core.audit.log import verify_chain
from core.invoicing.tables import Invoice
from core.payments.tables import Allocation
from core.remittance import services
from core.remittance.synthetic import generate, score, seed_database, to_camt053
from core.remittance.tables import StatementLine
from tests.integration.cash_support import assert_books
from tests.integration.factories import SYSTEM


async def test_ten_thousand_noisy_lines_auto_match_without_a_wrong_application(db) -> None:
    data = generate(n_invoices=20_000, n_lines=10_000, seed=7)
    ids = await seed_database(data)
    index_of = {invoice_id: n for n, invoice_id in enumerate(ids["invoice_ids"])}
    file = to_camt053(data, "ACCURACY-1", date(2026, 11, 20))

    started = time.perf_counter()
    result = await services.import_statement(
        fmt="camt053", data=file, actor=SYSTEM, write_off_residuals=False
    )
    seconds = time.perf_counter() - started

    lines = await StatementLine.select(
        StatementLine.line_no, StatementLine.status, StatementLine.payment_id
    ).order_by(StatementLine.line_no)
    allocations: dict[int, list[tuple[int, int]]] = {}
    for row in await Allocation.select(
        Allocation.payment, Allocation.invoice, Allocation.amount_minor
    ):
        allocations.setdefault(row["payment"], []).append(
            (index_of[row["invoice"]], row["amount_minor"])
        )
    applied = [
        tuple(allocations.get(line["payment_id"], ())) if line["status"] == "auto_applied" else None
        for line in lines
    ]
    report = score(data, applied)
    print(  # the figures, visible with pytest -s
        f"\naccuracy: lines={report['lines']} auto={report['auto']} "
        f"auto_match_rate={report['auto_match_rate']:.4f} "
        f"of_matchable={report['auto_rate_of_matchable']:.4f} wrong={report['wrong']} "
        f"import_seconds={seconds:.2f}"
    )
    assert result.lines == 10_000
    assert result.auto_applied == report["auto"]
    assert report["wrong"] == 0, report["wrong_lines"]
    assert report["auto_match_rate"] >= 0.95
    # the untouched remainder stays open; the books balance with AR = open balances
    assert await Invoice.count().where(Invoice.status == "paid") > 8_000
    await assert_books("EUR")
    assert (await verify_chain()).ok
