"""Autopay end to end against PostgreSQL and the Stripe double: enrollment with the
mandate recorded, the daily run charging due invoices exactly once (run twice, or twice
at the same time), declines retried on the +1/+3/+7 day schedule with an email each
time and then given up, receipts emailed once per payment, books balanced throughout."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from core.audit.tables import AuditEvent
from core.errors import NotFound, ValidationFailed
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances, trial_balance_difference
from core.notifications import mailer as mail
from core.payments.tables import Payment, PaymentAttempt
from core.wallet import autopay, autopay_run, receipts
from core.wallet.rules import MANDATE_VERSION
from core.wallet.tables import AutopayCharge, AutopayEnrollment, ReceiptDelivery
from tests.integration import test_wallet_methods as base
from tests.integration.test_wallet_methods import Wallet, control, finalized_invoice, save_card

wallet_world = base.wallet_world  # the fixture

TODAY = datetime.now(UTC).date()


@pytest.fixture
def mails(smtp_server, mailbox):
    mail.configure(smtp_server[0], "billing@ledgerline.test")
    return mailbox


async def books_balance(currency: str) -> None:
    assert await trial_balance_difference() == 0
    open_rows = await Invoice.select(Invoice.balance_minor).where(
        (Invoice.status == "open") & (Invoice.currency == currency)
    )
    assert (await account_balances(currency)).get(acct.AR, 0) == sum(
        r["balance_minor"] for r in open_rows
    )


async def enroll(w: Wallet, method_id: int, account: int | None = None) -> int:
    return await autopay.enroll(
        await w.scope(),
        billing_account_id=account or w.usd,
        method_raw=str(method_id),
        agreed=True,
        mandate_version=MANDATE_VERSION,
        ip="203.0.113.9",
        actor=w.actor(),
    )


def succeeded_charges(w: Wallet) -> int:
    return int(control(w.stripe_url, "/_test/state")["charges"]["succeeded"])


async def test_enrollment_records_the_mandate_and_checks_input(wallet_world: Wallet) -> None:
    w = wallet_world
    card = await save_card(w)
    scope = await w.scope()
    with pytest.raises(ValidationFailed) as bad:
        await autopay.enroll(
            scope,
            billing_account_id=w.usd,
            method_raw="abc",
            agreed=False,
            mandate_version=MANDATE_VERSION,
            ip="",
            actor=w.actor(),
        )
    assert set(bad.value.errors) == {"method", "agree"}
    with pytest.raises(ValidationFailed):  # a stale page's mandate version
        await autopay.enroll(
            scope,
            billing_account_id=w.usd,
            method_raw=str(card.id),
            agreed=True,
            mandate_version="1999-01",
            ip="",
            actor=w.actor(),
        )
    with pytest.raises(NotFound):  # a viewer cannot enroll
        await autopay.enroll(
            await w.scope(w.viewer),
            billing_account_id=w.usd,
            method_raw=str(card.id),
            agreed=True,
            mandate_version=MANDATE_VERSION,
            ip="",
            actor=w.actor(w.viewer),
        )
    assert await AutopayEnrollment.count() == 0

    enrollment = await enroll(w, card.id)
    row = await AutopayEnrollment.select().where(AutopayEnrollment.id == enrollment).first()
    overview = {a.billing_account_id: a for a in await autopay.autopay_overview(scope)}
    assert row["mandate_text"] == overview[w.usd].mandate_text  # verbatim what was shown
    assert "Acme Inc." in row["mandate_text"]
    assert "Wallet US (WAL-US)" in row["mandate_text"]
    assert (row["mandate_version"], row["accepted_by_user"], row["accepted_ip"]) == (
        MANDATE_VERSION,
        w.payer,
        "203.0.113.9",
    )
    assert overview[w.usd].method_label == "Visa ending 4242"
    assert overview[w.eur].enrollment_id is None
    audit = await AuditEvent.select().where(AuditEvent.action == "autopay.enrolled").first()
    assert audit is not None
    assert await autopay.disenroll(scope, billing_account_id=w.usd, actor=w.actor())
    assert not await autopay.disenroll(scope, billing_account_id=w.usd, actor=w.actor())
    assert await AutopayEnrollment.count().where(AutopayEnrollment.active.eq(True)) == 0


async def test_daily_run_charges_due_invoices_once_and_emails_one_receipt(
    wallet_world: Wallet, mails
) -> None:
    w = wallet_world
    card = await save_card(w)
    due_a = await finalized_invoice(w.usd, "100.00", TODAY - timedelta(days=20))
    due_b = await finalized_invoice(w.usd, "25.50", TODAY - timedelta(days=14))  # due today
    later = await finalized_invoice(w.usd, "40.00", TODAY)  # due in 14 days
    not_enrolled = await finalized_invoice(w.eur, "60.00", TODAY - timedelta(days=30))
    await enroll(w, card.id)

    first = await autopay_run.run_autopay(TODAY)
    assert (first.charged, first.succeeded, first.failed) == (1, 1, 0)
    second = await autopay_run.run_autopay(TODAY)  # the cron job running again
    assert (second.charged, second.succeeded) == (0, 0)
    assert succeeded_charges(w) == 1
    statuses = {
        r["id"]: r["status"]
        for r in await Invoice.select(Invoice.id, Invoice.status).where(
            Invoice.id.is_in([due_a, due_b, later, not_enrolled])
        )
    }
    assert statuses == {due_a: "paid", due_b: "paid", later: "open", not_enrolled: "open"}
    [payment] = await Payment.select()
    assert (payment["amount_minor"], payment["currency"]) == (12550, "USD")
    attempt = await PaymentAttempt.select().where(PaymentAttempt.id == payment["attempt"]).first()
    assert attempt["kind"] == "autopay"
    await books_balance("USD")
    await books_balance("EUR")

    # Receipt: recorded once, sent once, however often the jobs run.
    assert len(await receipts.queue_receipts()) == 1
    assert await receipts.queue_receipts() == []
    [delivery] = await receipts.pending_receipts()
    sent = await asyncio.gather(
        *(receipts.send_receipt(delivery, "http://portal.test") for _ in range(3))
    )
    assert sorted(sent) == ["not_claimable", "not_claimable", "sent"]
    assert await receipts.send_receipt(delivery, "http://portal.test") == "not_claimable"
    [message] = mails.to("payer@wallet.example")
    assert "Payment receipt R-" in str(message["Subject"])
    body = message.get_content()
    assert "$125.50" in body
    assert "Visa ending 4242 (autopay)" in body
    assert f"/wallet/receipts/{payment['id']}" in body
    assert await ReceiptDelivery.count().where(ReceiptDelivery.status == "sent") == 1


async def test_concurrent_runs_never_put_an_invoice_in_two_attempts(wallet_world: Wallet) -> None:
    w = wallet_world
    card = await save_card(w)
    await finalized_invoice(w.usd, "80.00", TODAY - timedelta(days=15))
    await finalized_invoice(w.eur, "90.00", TODAY - timedelta(days=15))
    await enroll(w, card.id)
    await enroll(w, card.id, account=w.eur)
    reports = await asyncio.gather(*(autopay_run.run_autopay(TODAY) for _ in range(4)))
    assert sum(r.succeeded for r in reports) == 2  # one per account and currency
    assert succeeded_charges(w) == 2
    assert await PaymentAttempt.count() == 2
    assert await Payment.count() == 2
    await books_balance("USD")
    await books_balance("EUR")


async def test_declines_are_retried_on_schedule_then_given_up(wallet_world: Wallet, mails) -> None:
    w = wallet_world
    bad = await save_card(w, "4000000000009995")  # attaches; every charge: insufficient funds
    inv = await finalized_invoice(w.usd, "300.00", TODAY - timedelta(days=15))
    await enroll(w, bad.id)
    start = datetime.now(UTC)

    async def run(days: float) -> autopay_run.RunReport:
        moment = start + timedelta(days=days)
        return await autopay_run.run_autopay(moment.date(), now=moment)

    tries = []
    for day in (0, 0.5, 1, 2, 4, 10, 11, 30):  # retries due at +1, +1+3, +4+7 days
        report = await run(day)
        tries.append((day, report.charged))
    assert tries == [(0, 1), (0.5, 0), (1, 1), (2, 0), (4, 1), (10, 0), (11, 1), (30, 0)]
    charges = await AutopayCharge.select().order_by(AutopayCharge.id)
    assert [c["try_number"] for c in charges] == [1, 2, 3, 4]
    assert {c["outcome"] for c in charges} == {"failed"}
    assert all("insufficient funds" in c["failure_message"] for c in charges)
    gaps = [(b["next_try_at"] - a["next_try_at"]).days for a, b in itertools.pairwise(charges[:3])]
    assert gaps == [3, 7]
    assert charges[-1]["next_try_at"] is None  # the last try
    assert succeeded_charges(w) == 0
    assert (await Invoice.select(Invoice.status).where(Invoice.id == inv).first())[
        "status"
    ] == "open"
    await books_balance("USD")

    # One email per failed try, at most once each.
    for charge_id in await autopay_run.pending_notices():
        assert await autopay_run.send_failure_notice(charge_id, "http://portal.test") == "sent"
        assert (
            await autopay_run.send_failure_notice(charge_id, "http://portal.test")
            == "not_claimable"
        )
    messages = mails.to("payer@wallet.example")
    assert len(messages) == 4
    assert all(
        "Autopay charge failed for Wallet US: $300.00" in str(m["Subject"]) for m in messages
    )
    assert "We will try again on" in messages[0].get_content()
    assert "This was the last of 4 tries" in messages[-1].get_content()

    # A new card (a new enrollment and mandate) starts again, and pays.
    good = await save_card(w)
    await enroll(w, good.id)
    report = await run(31)
    assert (report.charged, report.succeeded) == (1, 1)
    assert succeeded_charges(w) == 1
    assert (await Invoice.select(Invoice.status).where(Invoice.id == inv).first())[
        "status"
    ] == "paid"
    await books_balance("USD")


async def test_a_crash_after_the_claim_is_recovered_without_double_charging(
    wallet_world: Wallet,
) -> None:
    """The run dies after creating the attempt but before charging: the next run charges
    that attempt (same idempotency key), and nothing twice."""
    w = wallet_world
    card = await save_card(w)
    await finalized_invoice(w.usd, "70.00", TODAY - timedelta(days=15))
    await enroll(w, card.id)
    plans, enrollments = await autopay_run._plans(TODAY, datetime.now(UTC))
    [plan] = plans
    charge_id = await autopay_run._claim(plan, enrollments[w.usd], datetime.now(UTC))
    assert charge_id is not None
    assert await autopay_run._start(charge_id, plan, enrollments[w.usd], w.root) is not None
    # ... crash here. The next daily run:
    report = await autopay_run.run_autopay(TODAY)
    assert (report.charged, report.succeeded) == (1, 1)
    assert await autopay_run.run_autopay(TODAY) is not None
    assert succeeded_charges(w) == 1
    assert await PaymentAttempt.count() == 1
    await books_balance("USD")


async def test_one_accounts_failure_does_not_stop_the_others(
    wallet_world: Wallet, monkeypatch
) -> None:
    """An unexpected error for one account is logged and counted; the other account is
    charged; the stuck claim is abandoned after the timeout and charged by a later run."""
    w = wallet_world
    card = await save_card(w)
    await finalized_invoice(w.usd, "80.00", TODAY - timedelta(days=15))
    eur_invoice = await finalized_invoice(w.eur, "90.00", TODAY - timedelta(days=15))
    await enroll(w, card.id)
    await enroll(w, card.id, account=w.eur)
    real_start = autopay_run._start

    async def broken_for_eur(charge_id, plan, enrollment, root):  # type: ignore[no-untyped-def]
        if plan.billing_account_id == w.eur:
            raise RuntimeError("database went away")
        return await real_start(charge_id, plan, enrollment, root)

    monkeypatch.setattr(autopay_run, "_start", broken_for_eur)
    report = await autopay_run.run_autopay(TODAY)
    assert (report.succeeded, report.errors) == (1, 1)
    monkeypatch.setattr(autopay_run, "_start", real_start)
    soon = await autopay_run.run_autopay(TODAY)  # the claim still holds the invoice
    assert soon.charged == 0
    later = datetime.now(UTC) + autopay_run.CLAIM_TIMEOUT + timedelta(minutes=1)
    recovered = await autopay_run.run_autopay(TODAY, now=later)
    assert (recovered.charged, recovered.succeeded) == (1, 1)
    assert (await Invoice.select(Invoice.status).where(Invoice.id == eur_invoice).first())[
        "status"
    ] == "paid"
    assert succeeded_charges(w) == 2
    await books_balance("EUR")
