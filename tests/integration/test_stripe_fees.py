"""Stripe processing fees: settling a Stripe payment books the charge's fee (read from its
balance transaction at Stripe) against the Stripe balance, exactly once, so the ledger's
Stripe balance is Stripe's net and the reconciliation finds no difference. A fee that
could not be read at settlement is booked by the next settle or by the reconciliation."""

from __future__ import annotations

import stripe

from core.collections.reconciliation import differences, reconcile
from core.identity.scope import load_scope
from core.ledger import accounts as acct
from core.ledger.posting import account_balances
from core.ledger.tables import JournalEntry
from core.payments import fees, gateway
from core.payments.attempts import (
    PayItem,
    charge_saved_method,
    create_attempt,
    get_attempt,
    settle_attempt,
)
from tests.integration import test_payments_world as pay_world
from tests.integration.test_payments_world import ACTOR, World, assert_books

pay_double = pay_world.pay_double
double = pay_world.double
world = pay_world.world

FEE = (10000 * 29 + 500) // 1000 + 30  # the double's 2.9 % + 30 on 100.00 USD


async def settle_invoice(world: World, name: str = "a", amount: int = 10000) -> int:
    attempt = await create_attempt(
        organization_root_id=world.root,
        items=[PayItem(world.invoices[name], amount)],
        kind="saved_method",
        user_id=world.payer,
        actor=ACTOR,
        scope=await load_scope(world.payer),
        stripe_customer=world.stripe_customer,
        payment_method=world.payment_method,
    )
    status = await charge_saved_method(
        attempt.id,
        stripe_customer=world.stripe_customer,
        payment_method=world.payment_method,
        actor=ACTOR,
        off_session=True,
    )
    assert status == "succeeded"
    return attempt.id


async def fee_entries() -> list[dict]:
    return await JournalEntry.select().where(JournalEntry.source_type == fees.SOURCE_TYPE)


async def test_settled_payment_books_its_fee_once_and_reconciles(world: World, double) -> None:
    attempt_id = await settle_invoice(world)

    [entry] = await fee_entries()
    assert (entry["currency"], entry["event"]) == ("USD", "booked")
    balances = await account_balances("USD")
    assert FEE == 320
    assert balances[acct.PROCESSING_FEES] == FEE
    assert balances[acct.STRIPE_BALANCE] == 10000 - FEE  # what Stripe holds: the net
    # Settling again (a webhook's repeat) books nothing more.
    attempt = await get_attempt(attempt_id)
    assert await settle_attempt(attempt_id, ACTOR, attempt.stripe_payment_intent) == "succeeded"
    assert len(await fee_entries()) == 1

    summary = await reconcile(client=gateway.stripe_client())
    assert (summary.transactions, summary.differences) == (1, 0)
    assert summary.fees_minor == {"USD": FEE}
    assert await differences() == []
    await assert_books()


async def test_fee_not_readable_at_settlement_is_booked_later(
    world: World, double, monkeypatch
) -> None:
    async def unreachable(*args: object, **kwargs: object) -> None:
        raise stripe.APIConnectionError("Stripe is unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(fees, "book_stripe_fee", unreachable)
        first = await settle_invoice(world)  # the payments go through anyway
        second = await settle_invoice(world, "b", 25000)
    assert await fee_entries() == []
    assert (await account_balances("USD"))[acct.STRIPE_BALANCE] == 35000

    # The next settle of an attempt (e.g. Stripe's webhook) books its fee ...
    assert await settle_attempt(second, ACTOR) == "succeeded"
    assert len(await fee_entries()) == 1
    fee_b = (25000 * 29 + 500) // 1000 + 30

    # ... and the reconciliation books the other from the balance transaction it reads.
    summary = await reconcile(client=gateway.stripe_client())
    assert (summary.transactions, summary.differences) == (2, 0)
    assert await settle_attempt(first, ACTOR) == "succeeded"  # nothing more
    assert len(await fee_entries()) == 2
    assert (await account_balances("USD"))[acct.STRIPE_BALANCE] == 35000 - FEE - fee_b
    await assert_books()
