"""The wallet's arq jobs through a real worker (burst mode) on the real Redis: the daily
autopay job charges once however often it runs and emails the failure of a declined
charge once; the receipt jobs email each payment's receipt once, even when enqueued
again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis
from arq.worker import Worker

from core.notifications import mailer as mail
from core.wallet import autopay
from core.wallet.rules import MANDATE_VERSION
from core.wallet.tables import AutopayCharge, ReceiptDelivery
from tests.conftest import TEST_REDIS_URL
from tests.integration import test_wallet_methods as base
from tests.integration.test_wallet_methods import Wallet, control, finalized_invoice, save_card
from workers import wallet_jobs
from workers.settings import redis_settings

wallet_world = base.wallet_world  # the fixture
TODAY = datetime.now(UTC).date()


@pytest.fixture
async def queue() -> AsyncIterator[ArqRedis]:
    name = f"test:wallet:{uuid.uuid4().hex}"
    pool = await create_pool(redis_settings(TEST_REDIS_URL), default_queue_name=name)
    pool.wallet_queue = name  # type: ignore[attr-defined]
    yield pool
    await pool.aclose()


async def drain(pool: ArqRedis) -> None:
    worker = Worker(
        functions=wallet_jobs.FUNCTIONS,
        redis_pool=pool,
        queue_name=pool.wallet_queue,  # type: ignore[attr-defined]
        burst=True,
        handle_signals=False,
        poll_delay=0.01,
        keep_result=0,
    )
    await worker.main()


def ctx(pool: ArqRedis) -> dict[str, Any]:
    return {"redis": pool}


@pytest.fixture
def mails(smtp_server, mailbox):
    mail.configure(smtp_server[0], "billing@ledgerline.test")
    return mailbox


async def enroll(w: Wallet, method_id: int) -> None:
    await autopay.enroll(
        await w.scope(),
        billing_account_id=w.usd,
        method_raw=str(method_id),
        agreed=True,
        mandate_version=MANDATE_VERSION,
        ip="203.0.113.9",
        actor=w.actor(),
    )


async def test_daily_job_charges_once_and_receipt_jobs_email_once(
    wallet_world: Wallet, queue: ArqRedis, mails
) -> None:
    w = wallet_world
    card = await save_card(w)
    await finalized_invoice(w.usd, "42.00", TODAY - timedelta(days=20))
    await enroll(w, card.id)
    first = await wallet_jobs.autopay_daily(ctx(queue))
    again = await wallet_jobs.autopay_daily(ctx(queue))
    assert (first["charged"], first["succeeded"]) == (1, 1)
    assert again["charged"] == 0
    assert control(w.stripe_url, "/_test/state")["charges"]["succeeded"] == 1

    assert await wallet_jobs.queue_receipts(ctx(queue)) == 1
    assert await wallet_jobs.queue_receipts(ctx(queue)) == 1  # still pending: enqueued again
    await drain(queue)
    assert await wallet_jobs.queue_receipts(ctx(queue)) == 0  # sent: nothing left
    await drain(queue)
    [receipt] = mails.to("payer@wallet.example")
    assert "$42.00" in str(receipt["Subject"])
    assert "http://portal.test/wallet/receipts/" in receipt.get_content()
    assert await ReceiptDelivery.count().where(ReceiptDelivery.status == "sent") == 1


async def test_declined_autopay_is_emailed_once(
    wallet_world: Wallet, queue: ArqRedis, mails
) -> None:
    w = wallet_world
    card = await save_card(w, "4000000000000341")  # attaches; charges declined
    await finalized_invoice(w.usd, "42.00", TODAY - timedelta(days=20))
    await enroll(w, card.id)
    report = await wallet_jobs.autopay_daily(ctx(queue))
    assert (report["charged"], report["failed"]) == (1, 1)
    await wallet_jobs.enqueue_notices(queue, [c["id"] for c in await AutopayCharge.select()])
    await drain(queue)
    await wallet_jobs.autopay_daily(ctx(queue))  # the same day again: no new try, no email
    await drain(queue)
    [notice] = mails.to("payer@wallet.example")
    assert str(notice["Subject"]) == "Autopay charge failed for Wallet US: $42.00"
    body = notice.get_content()
    assert "Visa ending 0341" in body
    assert f"We will try again on {(datetime.now(UTC) + timedelta(days=1)):%d %b %Y}" in body
    [charge] = await AutopayCharge.select()
    assert (charge["outcome"], charge["notice_status"]) == ("failed", "sent")
