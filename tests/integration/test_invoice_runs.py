"""Invoice runs against PostgreSQL: what is due gets one invoice per subscription and
period with the right lines; reruns and repeated chunks create nothing more; the books
balance; numbers are gapless."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from core.billing import runs
from core.billing.run_tables import BilledPeriod, InvoiceRun, RunChunk
from core.billing.tables import PendingCharge, Subscription
from core.invoicing.tables import Invoice, InvoiceLine
from tests.integration.billing_runs_support import (
    APR,
    FEB,
    JAN,
    MAR,
    NOW,
    accounts,
    assert_books_balance,
    discount,
    event,
    gapless,
    metric,
    pending,
    price,
    subscription,
)
from tests.integration.factories import SYSTEM


async def run_all(as_of: datetime = NOW, chunk_size: int = 1000) -> runs.RunPlan:
    plan = await runs.start_run(as_of, SYSTEM, trigger="test", chunk_size=chunk_size)
    for n in plan.chunks:
        await runs.process_chunk(plan.run_id, n)
    return plan


async def lines_of(sub_id: int) -> list[dict]:
    bp = await BilledPeriod.select().where(BilledPeriod.subscription == sub_id)
    assert len(bp) == 1, bp
    return (
        await InvoiceLine.select(InvoiceLine.kind, InvoiceLine.amount_minor, InvoiceLine.quantity)
        .where(InvoiceLine.invoice == bp[0]["invoice"])
        .order_by(InvoiceLine.position)
    )


async def test_run_bills_every_model_once_and_reruns_add_nothing(db) -> None:
    acct, other = await accounts("RUN-1", "RUN-2")
    flat = await price("flat", {"amount": "49.00"})
    seats = await price("per_unit", {"unit_amount": "12.50"}, timing="arrears")
    await metric("api_eu", "api_calls", "sum", filters={"region": "eu"})
    calls = await price(
        "graduated",
        {
            "tiers": [
                {"up_to": "100", "unit_amount": "0.10"},
                {"up_to": None, "unit_amount": "0.05"},
            ]
        },
        metric="api_eu",
        minimum_minor=500,
    )
    adv = await subscription(acct, flat, start=MAR, end=APR, discount_id=await discount())
    arr = await subscription(acct, seats, quantity="3", start=FEB, end=MAR)
    use = await subscription(other, calls, start=FEB, end=MAR)
    not_due = await subscription(other, seats, start=MAR, end=APR)
    for q in ("80", "40"):
        await event(other, "api_calls", q, FEB.replace(day=10), props={"region": "eu"})
    await event(other, "api_calls", "1000", FEB.replace(day=11), props={"region": "us"})
    await event(other, "api_calls", "7", MAR.replace(day=2), props={"region": "eu"})  # next period
    prorate = await pending(acct, -1200, "proration_credit")
    milestone = await pending(other, 250000, "milestone")
    waiting = await pending(other, 99900, "milestone", triggered=False)

    plan = await run_all()
    assert plan.subscriptions == 3  # not_due is not picked

    assert [(x["kind"], x["amount_minor"]) for x in await lines_of(adv)] == [
        ("recurring", 4900),
        ("discount", -490),
        ("proration", -1200),
    ]
    assert [(x["kind"], x["amount_minor"]) for x in await lines_of(arr)] == [("recurring", 3750)]
    use_lines = await lines_of(use)
    # 120 eu calls: 100 x 0.10 + 20 x 0.05 = 11.00 (the minimum 5.00 does not bite)
    assert [(x["kind"], x["amount_minor"]) for x in use_lines] == [
        ("usage", 1100),
        ("milestone", 250000),
    ]
    assert use_lines[0]["quantity"] == 120
    assert await BilledPeriod.count().where(BilledPeriod.subscription == not_due) == 0

    invoices = await Invoice.select().order_by(Invoice.id)
    assert len(invoices) == 3
    assert all(i["status"] == "open" and i["number"] for i in invoices)
    assert gapless([i["number"] for i in invoices])
    assert {i["created_by"] for i in invoices} == {f"run:{plan.run_id}"}
    assert (await PendingCharge.select().where(PendingCharge.id == waiting).first())[
        "invoice"
    ] is None
    for pid in (prorate, milestone):
        charge = await PendingCharge.select().where(PendingCharge.id == pid).first()
        assert charge["invoice"] is not None

    # Periods rolled: advance stays on March (billed), arrears moved to March.
    subs = {s["id"]: s for s in await Subscription.select()}
    assert subs[adv]["current_period_start"] == MAR
    assert subs[adv]["discount_periods_used"] == 1
    assert subs[arr]["current_period_start"] == MAR
    assert subs[arr]["current_period_end"] == APR

    # The same chunk again, a second run on the same day, and both at once: nothing new.
    await runs.process_chunk(plan.run_id, 1)
    again = await run_all()
    assert again.subscriptions == 0
    await asyncio.gather(runs.process_chunk(plan.run_id, 1), runs.process_chunk(plan.run_id, 1))
    assert await Invoice.count() == 3
    run = await InvoiceRun.select().where(InvoiceRun.id == plan.run_id).first()
    assert run["status"] == "completed"
    chunk = await RunChunk.select().where(RunChunk.run == plan.run_id).first()
    assert (chunk["invoices"], chunk["finalized"], chunk["held"]) == (3, 3, 0)
    await assert_books_balance()

    # Next month: the advance subscription's April period, no discount any more (once);
    # the arrears one bills March.
    april = await run_all(datetime(2026, 4, 1, 6, tzinfo=UTC))
    assert april.subscriptions == 4
    bp = (
        await BilledPeriod.select()
        .where(BilledPeriod.subscription == adv)
        .order_by(BilledPeriod.period_start)
    )
    assert [b["period_start"] for b in bp] == [MAR, APR]
    lines = await InvoiceLine.select(InvoiceLine.kind).where(
        InvoiceLine.invoice == bp[1]["invoice"]
    )
    assert [x["kind"] for x in lines] == ["recurring"]
    numbers = [i["number"] for i in await Invoice.select(Invoice.number)]
    assert gapless(numbers)
    await assert_books_balance()


async def test_chunks_split_and_progress_counts(db) -> None:
    acct = (await accounts("RUN-3"))[0]
    flat = await price("flat", {"amount": "5.00"})
    for _ in range(7):
        await subscription(acct, flat, start=JAN, end=FEB)
    # A price in another currency than the account's is never billed: the chunk says so.
    wrong = await subscription(acct, await price("flat", {"amount": "5.00"}, currency="USD"))
    plan = await runs.start_run(NOW, SYSTEM, trigger="test", chunk_size=3)
    # One account's subscriptions stay together up to twice the chunk size.
    assert plan.chunks == [1, 2]
    progress = await runs.progress(plan.run_id)
    assert progress.running
    assert progress.invoices == 0
    for n in plan.chunks:
        await runs.process_chunk(plan.run_id, n)
    progress = await runs.progress(plan.run_id)
    assert not progress.running
    assert (progress.invoices, progress.finalized, progress.percent) == (7, 7, 100)
    assert [n["number"] for n in progress.notes] == [2]
    assert f"subscriptions {wrong}" in progress.notes[0]["error"]
    assert await BilledPeriod.count().where(BilledPeriod.subscription == wrong) == 0
    # January billed (advance, ended) and each rolled to February, which is billed too
    # by the next run.
    later = await run_all()
    assert later.subscriptions == 8  # the USD one is still due, and still not billed
    assert await Invoice.count() == 14
    await assert_books_balance()


async def test_failed_chunk_is_recorded_and_retryable(db) -> None:
    acct = (await accounts("RUN-4"))[0]
    flat = await price("flat", {"amount": "5.00"})
    await subscription(acct, flat, start=MAR, end=APR)
    plan = await runs.start_run(NOW, SYSTEM, trigger="test")
    await runs.record_chunk_error(plan.run_id, 1, "ConnectionError('db gone')", final=True)
    progress = await runs.progress(plan.run_id)
    assert progress.run["status"] == "failed"
    assert progress.failed_chunks[0]["error"] == "ConnectionError('db gone')"
    attempt = await runs.retry_chunk(plan.run_id, 1, SYSTEM)
    assert attempt == 1
    assert (
        runs.chunk_job_id(plan.run_id, 1, attempt, "ns") == f"ns:run:{plan.run_id}:chunk:1:retry:1"
    )
    await runs.process_chunk(plan.run_id, 1)
    progress = await runs.progress(plan.run_id)
    assert progress.run["status"] == "completed"
    assert progress.invoices == 1


async def test_cron_run_through_an_arq_worker_and_stalled_chunks_resume(db) -> None:
    import uuid

    from arq import create_pool
    from arq.worker import Worker

    from tests.conftest import TEST_REDIS_URL
    from workers import billing_runs_jobs as jobs
    from workers.settings import redis_settings

    acct = (await accounts("CRON-1"))[0]
    flat = await price("flat", {"amount": "7.00"})
    await subscription(acct, flat, start=MAR, end=APR)
    queue = f"test:runs:{uuid.uuid4().hex}"
    pool = await create_pool(redis_settings(TEST_REDIS_URL), default_queue_name=queue)
    try:
        run_id = await jobs.scheduled_invoice_run({"redis": pool})
        # A chunk whose worker died long ago: the sweep puts it back on the queue.
        stale = datetime(2026, 1, 1, tzinfo=UTC)
        await RunChunk.update({RunChunk.status: "running", RunChunk.updated_at: stale}).where(
            RunChunk.run == run_id
        )
        assert await jobs.resume_stalled_runs({"redis": pool}) == 1
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
        # The subscription was months behind (its period began in March): the run bills
        # March, and each completed run starts a catch-up run for the next period, up to
        # the one running now.
        now = datetime.now(UTC)
        periods = (now.year - MAR.year) * 12 + now.month - MAR.month + 1
        catch_ups = min(periods - 1, runs.MAX_CATCH_UP)
        # the first enqueue and the resumed one (same chunk), then one chunk per catch-up
        assert worker.jobs_complete == 2 + catch_ups
        assert worker.jobs_failed == 0
    finally:
        keys = [k async for k in pool.scan_iter(match="arq:*run:*")]
        if keys:
            await pool.delete(*keys)
        await pool.delete(queue)
        await pool.aclose()
    progress = await runs.progress(run_id)
    assert progress.run["status"] == "completed"
    assert (progress.invoices, progress.finalized) == (1, 1)
    chain = await InvoiceRun.select().order_by(InvoiceRun.id)
    assert [r["trigger"] for r in chain] == ["cron"] + ["catch-up"] * catch_ups
    assert [r["catch_up"] for r in chain] == list(range(catch_ups + 1))
    assert [r["follows"] for r in chain[1:]] == [r["id"] for r in chain[:-1]]
    assert {r["status"] for r in chain} == {"completed"}
    assert await Invoice.count() == catch_ups + 1
    assert await BilledPeriod.count() == catch_ups + 1


async def test_catch_up_runs_bill_every_period_behind_once(db) -> None:
    """A subscription three periods behind: the run bills one period, each catch-up run
    the next, then nothing is due and no further run starts; asking twice for the same
    run's catch-up starts one; a run that billed nothing starts none."""
    acct = (await accounts("CATCH-1"))[0]
    flat = await price("flat", {"amount": "10.00"})
    sub = await subscription(acct, flat, start=JAN, end=FEB)
    plan = await run_all(as_of=NOW)  # NOW is in March: January, February, March are due
    assert await runs.start_catch_up(plan.run_id + 999, SYSTEM) is None  # no such run
    chain = [plan.run_id]
    while True:
        first, second = await asyncio.gather(
            runs.start_catch_up(chain[-1], SYSTEM), runs.start_catch_up(chain[-1], SYSTEM)
        )
        follow = first or second
        assert first is None or second is None  # one catch-up per run
        if follow is None:
            break
        for n in follow.chunks:
            await runs.process_chunk(follow.run_id, n)
        chain.append(follow.run_id)
    assert len(chain) == 3
    periods = await BilledPeriod.select(BilledPeriod.period_start).where(
        BilledPeriod.subscription == sub
    )
    assert sorted(p["period_start"] for p in periods) == [JAN, FEB, MAR]
    assert await Invoice.count() == 3
    # A completed run that billed nothing continues nothing.
    idle = await run_all(as_of=NOW)
    assert await runs.start_catch_up(idle.run_id, SYSTEM) is None
    await assert_books_balance()
    numbers = [r["number"] for r in await Invoice.select(Invoice.number)]
    assert gapless(numbers)
