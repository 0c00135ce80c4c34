"""Invoice runs on the embedded default (SQLite): the same scenarios as on PostgreSQL
(every line kind, reruns, concurrent repeats of a chunk, chunk split, the reconciliation
window), a run started by the cron job and billed by a real arq worker, milestones
recorded and triggered through their service, and concurrent ``finalize_many`` calls:
each period invoiced once, numbers gapless, books balanced, audit chain intact."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from piccolo.engine.base import Engine

from core.audit.log import verify_chain
from core.billing import milestones, runs
from core.billing.run_tables import BilledPeriod, InvoiceRun
from core.billing.sql import to_sqlite
from core.billing.tables import PendingCharge
from core.db import bind_engine, engine, make_engine, migrate
from core.invoicing.finalization import finalize_many
from core.invoicing.tables import Invoice, InvoiceLine
from core.ledger.posting import ensure_chart
from core.ledger.tables import JournalEntry
from tests.integration import test_invoice_runs, test_usage_billing
from tests.integration.billing_runs_support import (
    APR,
    FEB,
    MAR,
    NOW,
    accounts,
    assert_books_balance,
    gapless,
    price,
    subscription,
)
from tests.integration.factories import SYSTEM
from workers import billing_runs_jobs as jobs

pytestmark = pytest.mark.sqlite


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per module; each test bills on its own copy."""
    path = tmp_path_factory.mktemp("runs_sqlite") / "template.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
async def sqlite_db(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Engine]:
    path = tmp_path / "ledgerline.sqlite3"
    shutil.copy(template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("DATABASE_URL", url)  # the job namespace derives from it
    try:
        previous: Engine | None = engine()
    except RuntimeError:
        previous = None
    sqlite = bind_engine(make_engine(url))
    try:
        await ensure_chart()
        yield sqlite
    finally:
        if previous is not None:
            bind_engine(previous)


# ------------------------------------------------------------- the PostgreSQL scenarios


async def test_every_line_kind_reruns_and_concurrent_chunks(sqlite_db) -> None:
    await test_invoice_runs.test_run_bills_every_model_once_and_reruns_add_nothing(sqlite_db)
    assert (await verify_chain()).ok


async def test_chunk_split_progress_and_wrong_currency(sqlite_db) -> None:
    await test_invoice_runs.test_chunks_split_and_progress_counts(sqlite_db)


async def test_reconciliation_window(sqlite_db, monkeypatch) -> None:
    """Late usage: draft recomputed (UPDATE … FROM), correction, held → release and
    discard, corrections billed by the next run."""
    await test_usage_billing.test_reconciliation_window(sqlite_db, monkeypatch)


async def test_failed_chunk_retry(sqlite_db) -> None:
    await test_invoice_runs.test_failed_chunk_is_recorded_and_retryable(sqlite_db)


# ------------------------------------------------------------- SQLite end to end


async def test_cron_run_billed_by_an_arq_worker(sqlite_db) -> None:
    """The scheduled run is no longer skipped on SQLite: it plans, a worker bills and
    finalizes, the late-usage job runs, and a second scheduled run bills nothing."""
    from arq import create_pool
    from arq.worker import Worker

    from tests.conftest import TEST_REDIS_URL
    from workers.settings import redis_settings

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    a, b = await accounts("CRON-S1", "CRON-S2")
    flat = await price("flat", {"amount": "7.00"})
    for account in (a, a, b):
        await subscription(
            account, flat, start=today - timedelta(days=1), end=today + timedelta(days=30)
        )
    charge = await milestones.record_milestone(
        b, "Phase 1 delivered", "1250.00", "acceptance of phase 1", SYSTEM
    )
    await milestones.record_trigger(charge, SYSTEM, "signed off")

    queue = f"test:runs-sqlite:{uuid.uuid4().hex}"
    pool = await create_pool(redis_settings(TEST_REDIS_URL), default_queue_name=queue)
    try:
        run_id = await jobs.scheduled_invoice_run({"redis": pool})
        worker = Worker(
            functions=[jobs.bill_chunk],
            redis_pool=pool,
            queue_name=queue,
            burst=True,
            handle_signals=False,
            poll_delay=0.01,
            keep_result=5,
        )
        await worker.main()
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
        assert await jobs.reconcile_late_usage({}) == 0
        assert await jobs.resume_stalled_runs({"redis": pool}) == 0
        again = await jobs.scheduled_invoice_run({"redis": pool})
    finally:
        keys = [k async for k in pool.scan_iter(match=f"arq:*{jobs.job_namespace()}*")]
        if keys:
            await pool.delete(*keys)
        await pool.delete(queue)
        await pool.aclose()

    progress = await runs.progress(run_id)
    assert progress.run["status"] == "completed"
    assert (progress.invoices, progress.finalized, progress.held) == (3, 3, 0)
    invoices = await Invoice.select().order_by(Invoice.id)
    # German seller and customers: 19 % VAT computed at finalization.
    assert [(i["status"], i["subtotal_minor"], i["total_minor"]) for i in invoices] == [
        ("open", 700, 833),
        ("open", 700, 833),
        ("open", 700 + 125000, 149583),
    ]
    assert gapless([i["number"] for i in invoices])
    [milestone] = await PendingCharge.select().where(PendingCharge.id == charge)
    assert milestone["invoice"] == invoices[2]["id"]
    kinds = await InvoiceLine.select(InvoiceLine.kind).where(
        InvoiceLine.invoice == invoices[2]["id"]
    )
    assert sorted(k["kind"] for k in kinds) == ["milestone", "recurring"]
    second = await InvoiceRun.select().where(InvoiceRun.id == again).first()
    assert (second["status"], second["subscriptions_total"], second["chunks_total"]) == (
        "completed",
        0,
        0,
    )
    assert await Invoice.count() == 3
    assert await JournalEntry.count() == 3
    await assert_books_balance()
    assert (await verify_chain()).ok


async def test_concurrent_finalize_many_is_gapless(sqlite_db, monkeypatch) -> None:
    """Drafts of a run, then overlapping ``finalize_many`` calls at once: SQLite
    serializes them; each draft is finalized once, numbers run 1..n, one entry each."""

    async def drafts_only(ids, actor):
        return {}

    accts = await accounts(*(f"FIN-S{i}" for i in range(12)))
    flat = await price("flat", {"amount": "10.00"})
    seats = await price("per_unit", {"unit_amount": "2.50"}, timing="arrears")
    for account in accts:
        await subscription(account, flat, start=MAR, end=APR)
        await subscription(account, seats, quantity="4", start=FEB, end=MAR)
    monkeypatch.setattr(runs, "_finalize", drafts_only)
    plan = await runs.start_run(NOW, SYSTEM, trigger="test", chunk_size=5)
    assert len(plan.chunks) == 4  # an account's two stay together
    await asyncio.gather(*(runs.process_chunk(plan.run_id, n) for n in plan.chunks))
    ids = [r["id"] for r in await Invoice.select(Invoice.id).order_by(Invoice.id)]
    assert len(ids) == 24
    assert await BilledPeriod.count() == 24

    reports = await asyncio.gather(
        finalize_many(ids[:8], SYSTEM), finalize_many(ids[4:], SYSTEM), finalize_many(ids, SYSTEM)
    )
    finalized = [i for r in reports for i in r.finalized]
    assert sorted(finalized) == ids  # each exactly once
    assert all(code == "not_draft" for r in reports for code in r.held_codes.values())
    rows = await Invoice.select(Invoice.number, Invoice.status, Invoice.subtotal_minor)
    assert {(r["status"], r["subtotal_minor"]) for r in rows} == {("open", 1000)}
    assert gapless([r["number"] for r in rows])
    assert await JournalEntry.count() == 24
    await assert_books_balance()
    assert (await verify_chain()).ok


def test_statement_translation_and_refusal() -> None:
    """The translation rules of ``core.billing.sql``; PostgreSQL-only SQL is refused."""
    update = to_sqlite(
        "UPDATE t AS x SET v = u.v FROM unnest($1::bigint[], $3::numeric[]) AS u(id, v)"
        " WHERE x.id = u.id AND x.k = $2 AND x.a = ANY($4::bigint[]) FOR UPDATE OF x"
    )
    assert update.sql == (
        "UPDATE t AS x SET v = u.v FROM (SELECT ?1 AS id, ?3 AS v) AS u"
        " WHERE x.id = u.id AND x.k = ?2 AND x.a IN (SELECT value FROM json_each(?4))"
    )
    assert update.rows([[1, 2], "k", ["0.5", "1.5"], [7]]) == [
        (1, "k", "0.5", "[7]"),
        (2, "k", "1.5", "[7]"),
    ]
    with pytest.raises(ValueError, match="different lengths"):
        update.rows([[1, 2], "k", ["0.5"], [7]])
    for statement in (
        "SELECT nextval('s') FROM generate_series(1, $1)",
        "UPDATE t SET c = GREATEST(c, $1)",
        "SELECT (array_agg(x ORDER BY y))[1] FROM t",
    ):
        with pytest.raises(ValueError, match="no SQLite translation"):
            to_sqlite(statement)
