"""Crash safety: a crash injected before and after the Stripe call and before and after
our commit, then a retry (or the reconciliation job) → exactly one charge at the Stripe
double, one payment, one journal entry, books balanced. Also: settling races, approvals."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from core.audit.tables import AuditEvent
from core.errors import Conflict
from core.identity.scope import load_scope
from core.invoicing.tables import Invoice
from core.ledger import accounts as acct
from core.ledger.posting import account_balances
from core.ledger.tables import JournalEntry
from core.payments import faults
from core.payments.attempts import (
    NotPermitted,
    PayItem,
    approve_attempt,
    charge_saved_method,
    create_attempt,
    get_attempt,
    reconcile,
    reject_attempt,
    settle_attempt,
    start_checkout,
)
from core.payments.tables import Payment
from tests.integration import test_payments_world as pay_world
from tests.integration.test_payments_world import (
    ACTOR,
    THRESHOLD,
    World,
    assert_books,
    control,
    succeeded_charges,
)

# Fixtures shared with the other payments modules.
pay_double = pay_world.pay_double
double = pay_world.double
world = pay_world.world


async def _attempt(world: World, *items: tuple[str, int], user: int | None = None) -> int:
    attempt = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(world.invoices[name], amount) for name, amount in items],
        kind="saved_method",
        user_id=user or world.payer,
        actor=ACTOR,
        scope=await load_scope(user or world.payer),
        stripe_customer=world.stripe_customer,
        payment_method=world.payment_method,
    )
    return attempt.id


async def _charge(world: World, attempt_id: int) -> str:
    return await charge_saved_method(
        attempt_id,
        stripe_customer=world.stripe_customer,
        payment_method=world.payment_method,
        actor=ACTOR,
        off_session=True,
    )


async def _assert_exactly_once(world: World, double_url: str, attempt_id: int) -> None:
    assert (await get_attempt(attempt_id)).status == "succeeded"
    assert succeeded_charges(double_url) == 1
    payments = await Payment.select().where(Payment.attempt == attempt_id)
    assert len(payments) == 1
    assert await JournalEntry.count().where(JournalEntry.source_type == "payment") == 1
    inv = await Invoice.select().where(Invoice.id == world.invoices["a"]).first()
    assert (inv["status"], inv["balance_minor"]) == ("paid", 0)
    # Stripe holds the charge net of its processing fee (2.9 % + 30), booked once.
    balances = await account_balances("USD")
    assert (balances[acct.STRIPE_BALANCE], balances[acct.PROCESSING_FEES]) == (9680, 320)
    await assert_books()


@pytest.mark.parametrize("point", faults.POINTS)
@pytest.mark.parametrize("recovery", ["retry", "reconcile"])
async def test_crash_then_recovery_charges_exactly_once(
    world: World, double, point: str, recovery: str
) -> None:
    attempt_id = await _attempt(world, ("a", 10000))
    faults.arm(point)
    with pytest.raises(faults.InjectedCrash):
        await _charge(world, attempt_id)
    expected_charges = 0 if point == "before_stripe" else 1
    assert succeeded_charges(double.url) == expected_charges
    if point != "after_commit":
        assert (await get_attempt(attempt_id)).status == "unknown"
        assert await Payment.count() == 0
    if recovery == "retry":
        assert await _charge(world, attempt_id) == "succeeded"
    else:
        report = await reconcile(unknown_after=timedelta(0))
        if point == "after_commit":
            assert report.checked == 0  # nothing left unknown
        else:
            assert (report.checked, report.succeeded) == (1, 1)
    # And once more for good measure: nothing changes.
    assert await _charge(world, attempt_id) == "succeeded"
    await reconcile(unknown_after=timedelta(0), processing_after=timedelta(0))
    await _assert_exactly_once(world, double.url, attempt_id)


async def test_concurrent_settles_record_one_payment(world: World, double) -> None:
    attempt_id = await _attempt(world, ("a", 10000))
    faults.arm("after_stripe")  # Stripe charged; we recorded nothing
    with pytest.raises(faults.InjectedCrash):
        await _charge(world, attempt_id)
    pi = next(iter(control(double.url, "/_test/state")["succeeded_charges_by_payment_intent"]))
    outcomes = await asyncio.gather(
        *(settle_attempt(attempt_id, ACTOR, payment_intent=pi) for _ in range(6))
    )
    assert set(outcomes) == {"succeeded"}
    await _assert_exactly_once(world, double.url, attempt_id)


async def test_declined_card_fails_the_attempt_and_moves_no_money(world: World, double) -> None:
    from core.payments import gateway

    client = gateway.stripe_client()
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": "tok_chargeDeclinedInsufficientFunds"}}
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": world.stripe_customer})
    attempt_id = await _attempt(world, ("a", 10000))
    status = await charge_saved_method(
        attempt_id,
        stripe_customer=world.stripe_customer,
        payment_method=pm.id,
        actor=ACTOR,
        off_session=True,
    )
    assert status == "failed"
    attempt = await get_attempt(attempt_id)
    assert attempt.stripe_payment_intent.startswith("pi_")
    assert "insufficient" in attempt.failure_message.lower()
    assert await Payment.count() == 0
    # The amount is no longer in flight: a new attempt for the invoice is accepted.
    await _attempt(world, ("a", 10000))
    await assert_books()


async def test_approval_above_threshold_by_another_approver(world: World, double) -> None:
    attempt_id = await _attempt(world, ("big", THRESHOLD + 100), user=world.approver)
    assert (await get_attempt(attempt_id)).status == "pending_approval"
    assert await _charge(world, attempt_id) == "pending_approval"  # not charged before
    assert succeeded_charges(double.url) == 0
    with pytest.raises(NotPermitted):  # a payer is not an approver
        await approve_attempt(
            attempt_id,
            approver_user_id=world.payer,
            scope=await load_scope(world.payer),
            actor=ACTOR,
        )
    with pytest.raises(NotPermitted):  # nobody approves their own payment
        await approve_attempt(
            attempt_id,
            approver_user_id=world.approver,
            scope=await load_scope(world.approver),
            actor=ACTOR,
        )
    approved = await approve_attempt(
        attempt_id,
        approver_user_id=world.approver2,
        scope=await load_scope(world.approver2),
        actor=ACTOR,
    )
    assert approved.status == "succeeded"
    assert approved.approved_by_user == world.approver2
    assert succeeded_charges(double.url) == 1
    assert await Payment.count() == 1
    actions = {r["action"] for r in await AuditEvent.select(AuditEvent.action)}
    assert {
        "payment_attempt.created",
        "payment_attempt.approved",
        "payment_attempt.succeeded",
    } <= actions
    await assert_books()


async def test_rejected_attempt_is_never_charged(world: World, double) -> None:
    attempt_id = await _attempt(world, ("big", THRESHOLD + 100))
    rejected = await reject_attempt(
        attempt_id,
        approver_user_id=world.approver,
        scope=await load_scope(world.approver),
        actor=ACTOR,
        reason="not this month",
    )
    assert rejected.status == "rejected"
    assert await _charge(world, attempt_id) == "rejected"
    assert succeeded_charges(double.url) == 0
    await assert_books()


@pytest.mark.parametrize("point", ["before_stripe", "after_stripe", "before_commit"])
async def test_checkout_crash_then_reconcile_reuses_one_session(
    world: World, double, point: str
) -> None:
    attempt = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(world.invoices["a"], 10000)],
        kind="checkout",
        user_id=world.payer,
        actor=ACTOR,
    )
    faults.arm(point)
    with pytest.raises(faults.InjectedCrash):
        await start_checkout(attempt.id, ACTOR)
    assert (await get_attempt(attempt.id)).status == "unknown"
    await reconcile(unknown_after=timedelta(0))
    again = await get_attempt(attempt.id)
    assert again.status == "processing"
    assert again.stripe_checkout_session.startswith("cs_test_")
    url = await start_checkout(attempt.id, ACTOR)  # the open session's page again
    assert again.stripe_checkout_session in url
    sessions = control(double.url, "/_test/state")["objects"].get("checkout.session", 0)
    assert sessions == 1
    await assert_books()


async def test_approved_checkout_attempt_can_continue_to_payment(world: World, double) -> None:
    attempt = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(world.invoices["big"], THRESHOLD + 1)],
        kind="checkout",
        user_id=world.payer,
        actor=ACTOR,
        scope=await load_scope(world.payer),
    )
    with pytest.raises(Conflict):  # nothing goes to Stripe before approval
        await start_checkout(attempt.id, ACTOR)
    approved = await approve_attempt(
        attempt.id,
        approver_user_id=world.approver,
        scope=await load_scope(world.approver),
        actor=ACTOR,
    )
    assert approved.status == "ready"  # the payer continues to Checkout
    assert "/_hosted/checkout/" in await start_checkout(attempt.id, ACTOR)
    assert (await get_attempt(attempt.id)).status == "processing"
