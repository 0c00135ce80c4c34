"""The daily dunning run against a real SMTP server (aiosmtpd): one email per invoice and
step however often it runs, none for paid, disputed, promised or paused invoices; a
refused email is retried by the next run; schedules per account; staff overview."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from core.audit.log import Actor
from core.collections.chargebacks import apply_dispute
from core.collections.dunning import (
    Reminder,
    cancel_promise,
    overdue_overview,
    pause,
    record_promise,
    resume,
    run_dunning,
    schedule_for,
    set_schedule,
)
from core.collections.tables import DunningPause, DunningReminder
from core.errors import Conflict, ValidationFailed
from core.ledger import accounts as acct
from core.notifications.mailer import Mailer
from core.notifications.mailer import configure as configure_mail
from core.payments.allocation import AllocationRequest
from core.payments.services import record_payment
from tests.conftest import server_env
from tests.integration.collections_support import (
    assert_books_balance,
    invoice,
    second_account,
    set_bill_to,
)
from tests.integration.factories import SYSTEM, billing_account
from workers.collections_jobs import compose_reminder, daily_dunning

ISSUE = date(2026, 4, 1)
DUE = ISSUE + timedelta(days=14)  # the factory's payment terms
BASE = "https://billing.example.test"
STAFF = Actor(type="staff", id="3")


@pytest.fixture
def send(smtp_server, mailbox):
    return Mailer(smtp_server[0], "Ledgerline <billing@ledgerline.test>").send


async def run(today: date, send) -> object:
    return await run_dunning(today, base_url=BASE, compose=compose_reminder, send=send)


async def test_one_email_per_step_and_none_for_blocked_invoices(db, mailbox, send) -> None:
    account = await billing_account("USD")
    await set_bill_to(account, "ap@customer.test")
    due_now = await invoice(account, "120.00", ISSUE)
    paid = await invoice(account, "50.00", ISSUE)
    await record_payment(
        billing_account_id=account,
        amount_minor=5000,
        currency_code="USD",
        method="bank_transfer",
        reference="wire",
        allocations=[AllocationRequest(paid, 5000)],
        actor=SYSTEM,
    )
    cb_account = await second_account(account, "ACME-4", "cb@customer.test")
    disputed = await invoice(cb_account, "75.00", ISSUE)
    same_account = await invoice(cb_account, "15.00", ISSUE)
    await record_payment(
        billing_account_id=cb_account,
        amount_minor=7500,
        currency_code="USD",
        method="card",
        reference="pi_dunning_test",
        allocations=[AllocationRequest(disputed, 7500)],
        actor=SYSTEM,
        cash_account=acct.STRIPE_BALANCE,
        stripe_payment_intent="pi_dunning_test",
    )
    await apply_dispute(
        {
            "id": "dp_dunning_test",
            "charge": "ch_dunning_test",
            "payment_intent": "pi_dunning_test",
            "amount": 7500,
            "currency": "usd",
            "status": "needs_response",
            "reason": "fraudulent",
            "balance_transactions": [],
            "evidence": {},
            "evidence_details": {"due_by": None, "submission_count": 0},
        }
    )
    customer_dispute = await invoice(account, "30.00", ISSUE)
    await pause(account, reason="dispute", invoice_id=customer_dispute, actor=STAFF)
    promised = await invoice(account, "40.00", ISSUE)
    today = DUE + timedelta(days=8)
    await record_promise(
        promised,
        promised_date_text=(today + timedelta(days=3)).isoformat(),
        amount_text="40.00",
        note="Paying Friday",
        actor=STAFF,
        today=today,
    )
    not_yet = await invoice(account, "60.00", today)  # due in 14 days: no step yet
    paused_account = await second_account(account, "ACME-2", "ap2@customer.test")
    on_paused = await invoice(paused_account, "10.00", ISSUE)
    account_pause = await pause(paused_account, reason="manual", note="Talking", actor=STAFF)

    first = await run(today, send)
    again = await run(today, send)
    await asyncio.gather(run(today, send), run(today, send))  # concurrent workers

    assert first.sent == [(due_now, 7)]
    assert again.sent == []
    [message] = mailbox.messages
    assert message["To"] == "ap@customer.test"
    assert "is 7 days overdue" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    assert f"{BASE}/invoices/{due_now}" in text
    assert "$120.00" in text
    html = message.get_body(("html",)).get_content()
    assert f'href="{BASE}/invoices/{due_now}"' in html
    reminders = await DunningReminder.select()
    assert [(r["invoice"], r["step_offset"], r["status"]) for r in reminders] == [
        (due_now, 7, "sent")
    ]
    assert reminders[0]["message_id"]

    # The overview shows why each invoice is quiet.
    overview = {row.invoice_id: row for row in await overdue_overview(today)}
    assert overview[due_now].blocked is None
    assert (overview[due_now].last_step, overview[due_now].next_step) == (7, 14)
    assert overview[disputed].blocked == "disputed"
    assert overview[same_account].blocked == "paused"  # the chargeback pauses its account
    assert overview[customer_dispute].blocked == "paused"
    assert overview[promised].blocked == "promise to pay"
    assert overview[promised].promise["amount_minor"] == 4000
    assert overview[on_paused].blocked == "paused"
    assert paid not in overview
    assert not_yet not in overview

    # After the promised date and the manual pause, their reminders go out; a chargeback
    # pause cannot be lifted by hand.
    later = today + timedelta(days=4)
    await resume(account_pause, STAFF)
    mailbox.clear()
    result = await run(later, send)
    assert sorted(result.sent) == sorted([(promised, 7), (on_paused, 7)])
    assert sorted(str(m["To"]) for m in mailbox.messages) == [
        "ap2@customer.test",
        "ap@customer.test",
    ]
    [chargeback_pause, _] = await DunningPause.select().where(DunningPause.reason == "chargeback")
    with pytest.raises(Conflict):
        await resume(chargeback_pause["id"], STAFF)
    await assert_books_balance("USD")


async def test_refused_email_is_retried_and_schedules_are_configurable(db, mailbox, send) -> None:
    account = await billing_account("USD")
    await set_bill_to(account, "ap@customer.test")
    inv = await invoice(account, "99.00", ISSUE)

    async def refusing(to: str, subject: str, text: str, html: str | None) -> str:
        raise OSError("SMTP server refused the message")

    today = DUE
    failed = await run(today, refusing)
    assert failed.failed == [(inv, 0)]
    [row] = await DunningReminder.select()
    assert (row["status"], row["error"]) == ("failed", "SMTP server refused the message")
    retried = await run(today, send)
    assert retried.sent == [(inv, 0)]
    assert len(mailbox.messages) == 1
    assert (await run(today, send)).sent == []

    # An account's own schedule: only +3 and +10; the default stays.
    with pytest.raises(ValidationFailed) as bad:
        await set_schedule(account, "3, ten", STAFF)
    assert "ten" in bad.value.errors["offsets"]
    assert await set_schedule(account, "+3, 10", STAFF) == (3, 10)
    assert await schedule_for(account) == (3, 10)
    assert await set_schedule(None, "-5, 0, 5", STAFF) == (-5, 0, 5)
    other = await second_account(account, "ACME-3", "")
    assert await schedule_for(other) == (-5, 0, 5)
    assert (await run(DUE + timedelta(days=7), send)).sent == [(inv, 3)]
    # No bill-to address: recorded as skipped, never sent.
    orphan = await invoice(other, "10.00", ISSUE)
    skipped = await run(DUE + timedelta(days=7), send)
    assert skipped.skipped == [(orphan, 5)]
    assert (await set_schedule(account, "", STAFF)) == (-5, 0, 5)
    assert len(mailbox.messages) == 2


async def test_promise_validation_and_cancel(db) -> None:
    account = await billing_account("USD")
    inv = await invoice(account, "100.00", ISSUE)
    today = DUE + timedelta(days=1)
    with pytest.raises(ValidationFailed) as bad:
        await record_promise(
            inv,
            promised_date_text="tomorrow",
            amount_text="500.00",
            note="",
            actor=STAFF,
            today=today,
        )
    assert set(bad.value.errors) == {"promised_date", "amount"}
    with pytest.raises(ValidationFailed):
        await record_promise(
            inv,
            promised_date_text=(today - timedelta(days=1)).isoformat(),
            amount_text="10.00",
            note="",
            actor=STAFF,
            today=today,
        )
    promise = await record_promise(
        inv,
        promised_date_text=(today + timedelta(days=2)).isoformat(),
        amount_text="100",
        note="CFO confirmed",
        actor=STAFF,
        today=today,
    )
    [row] = await overdue_overview(today)
    assert row.blocked == "promise to pay"
    await cancel_promise(promise, STAFF)
    [row] = await overdue_overview(today)
    assert row.blocked is None


def test_reminder_email_before_due() -> None:
    email = compose_reminder(
        Reminder(
            invoice_id=5,
            invoice_number="INV-US-2026-000005",
            billing_account_name="Globex US",
            recipient="ap@globex.test",
            currency="EUR",
            total_minor=123456,
            balance_minor=23456,
            due_date=date(2026, 5, 4),
            step_offset=-3,
            step_label="3 days before due",
            link="https://x.test/invoices/5",
        )
    )
    assert email.subject == "Invoice INV-US-2026-000005 is due on 04 May 2026"
    assert "€234.56" in email.text
    assert "https://x.test/invoices/5" in email.text
    assert email.html is not None
    assert "<strong>INV-US-2026-000005</strong>" in email.html


async def test_daily_cron_job_uses_the_settings_and_mailer(
    db, mailbox, smtp_server, monkeypatch, tmp_path
) -> None:
    for name, value in server_env("postgresql://unused/none", tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BASE_URL", "https://portal.example.test/")
    configure_mail(smtp_server[0], "Ledgerline <billing@ledgerline.test>")
    account = await billing_account("USD")
    await set_bill_to(account, "ap@customer.test")
    inv = await invoice(account, "10.00", datetime.now(UTC).date() - timedelta(days=14))
    assert await daily_dunning({}) == {"sent": 1, "failed": 0, "skipped": 0}
    assert await daily_dunning({}) == {"sent": 0, "failed": 0, "skipped": 0}
    [message] = mailbox.messages
    assert "is due today" in message["Subject"]
    assert (
        f"https://portal.example.test/invoices/{inv}" in message.get_body(("plain",)).get_content()
    )
