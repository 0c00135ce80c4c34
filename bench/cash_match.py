"""Benchmark of cash application: a 10,000-line camt.053 bank file against 100,000 open
invoices on PostgreSQL, imported, matched and auto-applied in one service call.

Run from the repo root::

    .venv/bin/python bench/cash_match.py [--invoices 100000] [--lines 10000] [--seed N]

What it does (bounded, cleans up after itself even on error):

1. creates a fresh PostgreSQL database (server from ``BENCH_DATABASE_URL``, default
   ``postgresql://postgres@127.0.0.1:5432/ledgerline_bench``, plus a random suffix) and
   applies the real migrations (``core.db.migrate``);
2. generates customers, open invoices and a noisy bank file whose right answers are
   known (``core.remittance.synthetic``, the generator the accuracy test uses) and
   writes the customers, invoices (with their balanced invoice entries) and the known
   payer accounts in bulk;
3. times ``core.remittance.services.import_statement`` on the camt.053 file: parse,
   duplicate check, loading the open invoices into in-memory indexes, matching, and the
   one transaction that stores the statement and its lines and records the payments,
   allocations, invoice balances, journal entries and audit events of every
   auto-applied line (residual write-offs are left out: they belong to the cash area);
4. checks the books (ledger balances, AR = open invoice balances) and scores the
   auto-applications against the known answers;
5. prints the figures, ending with
   ``result: lines=N seconds=S lines_per_s=N auto_match_rate=R wrong_auto=N``;
   the database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import date
from typing import Any

from bench_support import create_database, database_urls, drop_database


async def run(invoices: int, lines: int, seed: int) -> None:
    from core.audit.log import Actor
    from core.db import bind_engine, make_engine, migrate
    from core.invoicing.tables import Invoice
    from core.ledger import accounts as acct
    from core.ledger.posting import account_balances, trial_balance_difference
    from core.payments.tables import Allocation
    from core.remittance import services
    from core.remittance.synthetic import generate, score, seed_database, to_camt053
    from core.remittance.tables import StatementLine

    url, name, admin = database_urls()
    await create_database(admin, name)
    engine: Any = None
    try:
        t0 = time.perf_counter()
        migrate(url)
        engine = bind_engine(make_engine(url))
        await engine.start_connection_pool(min_size=1, max_size=4)
        data = generate(n_invoices=invoices, n_lines=lines, seed=seed)
        ids = await seed_database(data)
        file = to_camt053(data, f"BENCH-{seed}", date(2026, 11, 20))
        await engine.run_ddl("ANALYZE")
        print(
            f"setup: {invoices} open invoices, {len(data.customers)} customers, "
            f"{lines} lines ({len(file) / 1e6:.1f} MB camt.053) in {time.perf_counter() - t0:.1f} s"
        )

        started = time.perf_counter()
        result = await services.import_statement(
            fmt="camt053",
            data=file,
            actor=Actor.system("bench"),
            filename="bench.xml",
            write_off_residuals=False,
        )
        seconds = time.perf_counter() - started

        index_of = {invoice_id: n for n, invoice_id in enumerate(ids["invoice_ids"])}
        rows = await StatementLine.select(StatementLine.status, StatementLine.payment_id).order_by(
            StatementLine.line_no
        )
        by_payment: dict[int, list[tuple[int, int]]] = {}
        for row in await Allocation.select(
            Allocation.payment, Allocation.invoice, Allocation.amount_minor
        ):
            by_payment.setdefault(row["payment"], []).append(
                (index_of[row["invoice"]], row["amount_minor"])
            )
        applied = [
            tuple(by_payment.get(r["payment_id"], ())) if r["status"] == "auto_applied" else None
            for r in rows
        ]
        report = score(data, applied)
        balances = await account_balances(data.currency)
        open_sum = sum(
            r["balance_minor"]
            for r in await Invoice.select(Invoice.balance_minor).where(Invoice.status == "open")
        )
        books_ok = await trial_balance_difference() == 0 and balances.get(acct.AR) == open_sum
        print(
            f"import: {result.lines} lines, auto-applied {result.auto_applied}, "
            f"suggested {result.suggested}, unmatched {result.unmatched}"
        )
        print(
            f"accuracy: auto_match_rate={report['auto_match_rate']:.4f} "
            f"(of lines with a right answer: {report['auto_rate_of_matchable']:.4f}), "
            f"wrong auto-applications={report['wrong']}"
        )
        print("phases (s): " + ", ".join(f"{k} {v:.3f}" for k, v in result.timings))
        print(f"books: balanced and AR = open invoices: {books_ok}")
        print(
            f"result: lines={result.lines} seconds={seconds:.3f} "
            f"lines_per_s={result.lines / seconds:.0f} "
            f"auto_match_rate={report['auto_match_rate']:.4f} wrong_auto={report['wrong']}"
        )
    finally:
        if engine is not None:
            await engine.close_connection_pool()
        await drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20_261_122)
    args = parser.parse_args()
    asyncio.run(run(args.invoices, args.lines, args.seed))


if __name__ == "__main__":
    main()
