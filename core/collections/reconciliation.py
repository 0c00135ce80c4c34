"""Stripe reconciliation: Stripe balance transactions against the ledger's Stripe balance
(clearing) account, per Stripe object.

Each run lists the balance transactions created since the previous run (``created`` ≥
the newest one it saw; already stored ones are skipped by their unique id) and keeps
them. Transactions and ledger entries are grouped by a *key*: the payment intent for
charges and refunds (``pi_…``), the dispute for chargebacks (``dp_…``). For every key
touched by a new transaction, by a new ledger entry, or by a difference still open, the
run compares the sum Stripe moved with the sum the ledger moved on STRIPE_BALANCE:

* every transaction compares its ``net`` (amount less Stripe's fee): a charge against
  the payment (debit Stripe balance, gross) together with its processing fee, booked
  when the payment settled (``core.payments.fees``: credit Stripe balance, source
  ``stripe_fee``); a refund against the refund; a dispute withdrawal against the
  chargeback (its dispute fee is booked to Dispute losses with the withdrawal). A
  charge whose fee was never booked therefore shows as a difference of the fee. The
  fees of each run are also reported per currency as ``fees``.

Before comparing, a run books the processing fee of charges whose payment is recorded
but whose fee is not booked yet (``book_missing_fees``), from the stored transaction.

A difference is stored (``ReconciliationDifference``, one open row per key, updated by
later runs) and shown to staff; a later run that finds the key in agreement resolves it.
Ledger entries on STRIPE_BALANCE that belong to no Stripe object are flagged too.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from piccolo.query.functions.aggregate import Max

from core.audit.log import Actor, AuditRecord, record
from core.cash.tables import Refund
from core.collections.chargebacks import default_client
from core.collections.tables import (
    Chargeback,
    ReconciliationDifference,
    ReconciliationRun,
    StripeBalanceTxn,
)
from core.db import advisory_lock, transaction
from core.errors import NotFound, ValidationFailed
from core.ledger import accounts as acct
from core.ledger.tables import JournalEntry, JournalLine
from core.money import Money, format_money
from core.payments.fees import SOURCE_TYPE as FEE_SOURCE
from core.payments.fees import record_fee
from core.payments.tables import Payment

_RUN_LOCK_KEY = 0x4C4C_5243  # "LLRC": one reconciliation at a time
DISPUTE_CATEGORIES = ("dispute", "dispute_reversal")
COMPARED_TYPES = ("charge", "payment", "refund", "payment_refund")


# ---------------------------------------------------------------- pure rules


def txn_key(txn: Mapping[str, Any]) -> str:
    """The Stripe object a balance transaction belongs to ("" when not reconciled here),
    given the transaction with its ``source`` expanded."""
    source = txn.get("source")
    if txn.get("reporting_category") in DISPUTE_CATEGORIES:
        if isinstance(source, Mapping):
            return str(source.get("id") or "")
        return str(source or "")
    if txn.get("type") in COMPARED_TYPES and isinstance(source, Mapping):
        return str(source.get("payment_intent") or source.get("id") or "")
    return ""


def expected_ledger_minor(category: str, amount: int, net: int) -> int:
    """What the ledger should move on STRIPE_BALANCE for one Stripe balance transaction:
    its net, for every category (charges have their processing fee booked beside the
    payment; dispute withdrawals their dispute fee beside the chargeback)."""
    del category, amount  # kept in the signature: the rule may differ per category again
    return net


@dataclass(frozen=True, slots=True)
class Difference:
    key: str
    kind: str  # missing_in_ledger, missing_in_stripe, amount_mismatch
    currency: str
    stripe_minor: int
    ledger_minor: int


def compare(
    stripe_side: Mapping[str, tuple[str, int]],
    ledger_side: Mapping[str, tuple[str, int]],
    keys: Iterable[str],
) -> tuple[list[Difference], list[str]]:
    """(differences, keys in agreement) for ``keys``; sides map key → (currency, minor)."""
    differences: list[Difference] = []
    agreed: list[str] = []
    for key in sorted(set(keys)):
        s_cur, s_amt = stripe_side.get(key, ("", 0))
        l_cur, l_amt = ledger_side.get(key, ("", 0))
        in_stripe, in_ledger = key in stripe_side, key in ledger_side
        if in_stripe and in_ledger:
            same = s_amt == l_amt and s_cur == l_cur
        else:  # on one side at most: fine when it nets to nothing there
            same = s_amt == 0 and l_amt == 0
        if same:
            agreed.append(key)
        else:
            kind = (
                "missing_in_ledger"
                if not in_ledger
                else "missing_in_stripe"
                if not in_stripe
                else "amount_mismatch"
            )
            differences.append(Difference(key, kind, s_cur or l_cur, s_amt, l_amt))
    return differences, agreed


# ---------------------------------------------------------------- ledger side


async def _stripe_balance_by_entry(
    entry_ids: list[int] | None, since: datetime | None
) -> list[dict[str, Any]]:
    """Entries moving STRIPE_BALANCE: source, currency and debit-minus-credit."""
    query = JournalLine.select(
        JournalLine.entry.as_alias("entry"),
        JournalLine.entry.source_type.as_alias("source_type"),
        JournalLine.entry.source_id.as_alias("source_id"),
        JournalLine.entry.currency.as_alias("currency"),
        JournalLine.debit_minor,
        JournalLine.credit_minor,
    ).where(JournalLine.account.code == acct.STRIPE_BALANCE)
    if entry_ids is not None:
        query = query.where(JournalLine.entry.is_in(entry_ids or [-1]))
    if since is not None:
        query = query.where(JournalLine.entry.posted_at >= since)
    return await query


async def _keys_of_entries(rows: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """(source_type, source_id) → Stripe key, for the sources we know how to map."""
    by_type: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        by_type[r["source_type"]].add(int(r["source_id"]))
    keys: dict[tuple[str, int], str] = {}
    payment_ids = by_type["payment"] | by_type[FEE_SOURCE]
    if payment_ids:
        for p in await Payment.select(Payment.id, Payment.stripe_payment_intent).where(
            Payment.id.is_in(sorted(payment_ids))
        ):
            if p["stripe_payment_intent"]:
                for source_type in ("payment", FEE_SOURCE):
                    if int(p["id"]) in by_type[source_type]:
                        keys[(source_type, int(p["id"]))] = p["stripe_payment_intent"]
    if by_type["refund"]:
        for r in await Refund.select(
            Refund.id, Refund.payment.stripe_payment_intent.as_alias("pi")
        ).where(Refund.id.is_in(sorted(by_type["refund"]))):
            if r["pi"]:
                keys[("refund", int(r["id"]))] = r["pi"]
    if by_type["chargeback"]:
        for c in await Chargeback.select(Chargeback.id, Chargeback.stripe_dispute).where(
            Chargeback.id.is_in(sorted(by_type["chargeback"]))
        ):
            keys[("chargeback", int(c["id"]))] = c["stripe_dispute"]
    return keys


def _ledger_key(row: Mapping[str, Any], keys: Mapping[tuple[str, int], str]) -> str:
    source = (row["source_type"], int(row["source_id"]))
    return keys.get(source) or f"ledger:{source[0]}:{source[1]}"


async def _entries_for_keys(keys: set[str]) -> list[int]:
    """Journal entries that belong to the given Stripe keys."""
    pis = sorted(k for k in keys if k.startswith("pi_"))
    dps = sorted(k for k in keys if k.startswith("dp_"))
    sources: list[tuple[str, list[int]]] = []
    if pis:
        payment_ids = [
            int(p["id"])
            for p in await Payment.select(Payment.id).where(
                Payment.stripe_payment_intent.is_in(pis)
            )
        ]
        sources.append(("payment", payment_ids))
        sources.append((FEE_SOURCE, payment_ids))
        if payment_ids:
            refund_ids = [
                int(r["id"])
                for r in await Refund.select(Refund.id).where(Refund.payment.is_in(payment_ids))
            ]
            sources.append(("refund", refund_ids))
    if dps:
        sources.append(
            (
                "chargeback",
                [
                    int(c["id"])
                    for c in await Chargeback.select(Chargeback.id).where(
                        Chargeback.stripe_dispute.is_in(dps)
                    )
                ],
            )
        )
    for k in keys:
        if k.startswith("ledger:"):
            _, source_type, source_id = k.split(":", 2)
            sources.append((source_type, [int(source_id)]))
    entry_ids: list[int] = []
    for source_type, ids in sources:
        if ids:
            entry_ids += [
                int(e["id"])
                for e in await JournalEntry.select(JournalEntry.id).where(
                    (JournalEntry.source_type == source_type) & JournalEntry.source_id.is_in(ids)
                )
            ]
    return entry_ids


async def ledger_sums(keys: set[str]) -> dict[str, tuple[str, int]]:
    rows = await _stripe_balance_by_entry(await _entries_for_keys(keys), None)
    mapping = await _keys_of_entries(rows)
    sums: dict[str, tuple[str, int]] = {}
    for r in rows:
        key = _ledger_key(r, mapping)
        if key not in keys:
            continue
        cur, total = sums.get(key, (r["currency"], 0))
        sums[key] = (cur, total + int(r["debit_minor"]) - int(r["credit_minor"]))
    return sums


# ---------------------------------------------------------------- stripe side


async def list_balance_transactions(
    client: stripe.StripeClient, since_created: int
) -> list[dict[str, Any]]:
    def fetch() -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": 100, "expand": ["data.source"]}
        if since_created:
            params["created"] = {"gte": since_created}
        listing = client.v1.balance_transactions.list(params=params)  # type: ignore[arg-type]
        return [t.to_dict(recursive=True) for t in listing.auto_paging_iter()]

    return await asyncio.to_thread(fetch)


async def stripe_sums(
    keys: set[str], fees: dict[str, tuple[int, int]] | None = None
) -> dict[str, tuple[str, int]]:
    """key → (currency, what the ledger should have moved); ``fees``, when given, is
    filled with key → (gross amount, Stripe fees) for the difference's explanation."""
    sums: dict[str, tuple[str, int]] = {}
    if not keys:
        return sums
    for t in await StripeBalanceTxn.select().where(StripeBalanceTxn.key.is_in(sorted(keys))):
        cur, total = sums.get(t["key"], (t["currency"], 0))
        expected = expected_ledger_minor(t["category"], t["amount_minor"], t["net_minor"])
        sums[t["key"]] = (cur, total + expected)
        if fees is not None:
            gross, fee = fees.get(t["key"], (0, 0))
            fees[t["key"]] = (gross + int(t["amount_minor"]), fee + int(t["fee_minor"]))
    return sums


async def book_missing_fees(keys: set[str], actor: Actor) -> int:
    """Book the processing fee of charges Stripe reported (stored balance transactions
    with a fee) whose payment is recorded but whose fee is not booked yet, e.g. because
    Stripe was unreachable right after settlement. No Stripe call: the fee comes from
    the stored transaction. Returns how many fees were booked."""
    pis = sorted(k for k in keys if k.startswith("pi_"))
    if not pis:
        return 0
    charges = await StripeBalanceTxn.select(
        StripeBalanceTxn.key,
        StripeBalanceTxn.stripe_id,
        StripeBalanceTxn.currency,
        StripeBalanceTxn.fee_minor,
    ).where(
        StripeBalanceTxn.key.is_in(pis)
        & StripeBalanceTxn.type.is_in(["charge", "payment"])
        & (StripeBalanceTxn.fee_minor > 0)
    )
    if not charges:
        return 0
    first_payment: dict[str, int] = {}
    for p in await Payment.select(Payment.id, Payment.stripe_payment_intent).where(
        Payment.stripe_payment_intent.is_in(sorted({c["key"] for c in charges}))
    ):
        pi = p["stripe_payment_intent"]
        first_payment[pi] = min(first_payment.get(pi, p["id"]), p["id"])
    booked = {
        int(e["source_id"])
        for e in await JournalEntry.select(JournalEntry.source_id).where(
            (JournalEntry.source_type == FEE_SOURCE)
            & JournalEntry.source_id.is_in(sorted(first_payment.values()) or [-1])
        )
    }
    count = 0
    for c in charges:
        payment_id = first_payment.get(c["key"])
        if payment_id is None or payment_id in booked:
            continue
        if await record_fee(c["key"], c["currency"], c["fee_minor"], c["stripe_id"], actor):
            booked.add(payment_id)
            count += 1
    return count


# ---------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: int
    transactions: int
    compared: int
    differences: int
    resolved: int
    fees_minor: dict[str, int]


async def reconcile(
    *, client: stripe.StripeClient | None = None, actor: Actor | None = None
) -> RunSummary:
    """List new Stripe balance transactions, compare, record differences."""
    actor = actor or Actor.system("stripe-reconciliation")
    stripe_client = client or default_client()
    previous = (
        await ReconciliationRun.select(ReconciliationRun.started_at, ReconciliationRun.last_created)
        .where(ReconciliationRun.finished_at.is_not_null())
        .order_by(ReconciliationRun.id, ascending=False)
        .first()
    )
    since_created = int(previous["last_created"]) if previous else 0
    since_posted = previous["started_at"] if previous else None
    started = datetime.now(UTC)
    [run] = await ReconciliationRun.insert(
        ReconciliationRun(
            started_at=started,
            since_created=since_created,
            triggered_by=f"{actor.type}:{actor.id}",
        )
    )
    run_id = int(run["id"])
    txns = await list_balance_transactions(stripe_client, since_created)
    async with transaction():
        await advisory_lock(_RUN_LOCK_KEY)
        new_keys: set[str] = set()
        fees: dict[str, int] = defaultdict(int)
        rows = [
            StripeBalanceTxn(
                stripe_id=t["id"],
                type=str(t.get("type") or "")[:32],
                category=str(t.get("reporting_category") or "")[:32],
                source=(
                    str(t["source"].get("id"))
                    if isinstance(t.get("source"), Mapping)
                    else str(t.get("source") or "")
                )[:64],
                key=txn_key(t)[:64],
                currency=str(t.get("currency") or "").upper(),
                amount_minor=int(t.get("amount") or 0),
                fee_minor=int(t.get("fee") or 0),
                net_minor=int(t.get("net") or 0),
                created=int(t.get("created") or 0),
                run=run_id,
            )
            for t in txns
        ]
        inserted: list[dict[str, Any]] = []
        if rows:
            inserted = await (
                StripeBalanceTxn.insert(*rows)
                .on_conflict(target=StripeBalanceTxn.stripe_id, action="DO NOTHING")
                .returning(
                    StripeBalanceTxn.key,
                    StripeBalanceTxn.category,
                    StripeBalanceTxn.fee_minor,
                    StripeBalanceTxn.currency,
                )
            )
        for r in inserted:
            if r["key"]:
                new_keys.add(r["key"])
            if r["category"] not in DISPUTE_CATEGORIES:
                fees[r["currency"]] += int(r["fee_minor"])
        # Ledger entries posted since the previous run, mapped to their Stripe keys.
        recent = await _stripe_balance_by_entry(None, since_posted)
        mapping = await _keys_of_entries(recent)
        new_keys |= {_ledger_key(r, mapping) for r in recent}
        open_keys = {
            d["key"]
            for d in await ReconciliationDifference.select(ReconciliationDifference.key).where(
                ReconciliationDifference.status == "open"
            )
        }
        keys = new_keys | open_keys
        await book_missing_fees(keys, actor)
        gross_fees: dict[str, tuple[int, int]] = {}
        differences, agreed = compare(
            await stripe_sums(keys, gross_fees), await ledger_sums(keys), keys
        )
        now = datetime.now(UTC)
        for d in differences:
            detail = _detail(d, *gross_fees.get(d.key, (0, 0)))
            updated = (
                await ReconciliationDifference.update(
                    {
                        ReconciliationDifference.kind: d.kind,
                        ReconciliationDifference.stripe_minor: d.stripe_minor,
                        ReconciliationDifference.ledger_minor: d.ledger_minor,
                        ReconciliationDifference.detail: detail,
                        ReconciliationDifference.run: run_id,
                    }
                )
                .where(
                    (ReconciliationDifference.key == d.key)
                    & (ReconciliationDifference.status == "open")
                )
                .returning(ReconciliationDifference.id)
            )
            if not updated:
                await ReconciliationDifference.insert(
                    ReconciliationDifference(
                        key=d.key,
                        kind=d.kind,
                        currency=d.currency,
                        stripe_minor=d.stripe_minor,
                        ledger_minor=d.ledger_minor,
                        detail=detail,
                        status="open",
                        run=run_id,
                        created_at=now,
                    )
                )
        resolved = (
            await ReconciliationDifference.update(
                {
                    ReconciliationDifference.status: "resolved",
                    ReconciliationDifference.resolved_at: now,
                    ReconciliationDifference.resolved_by: "reconciliation",
                    ReconciliationDifference.note: "Stripe and the ledger agree now.",
                }
            )
            .where(
                ReconciliationDifference.key.is_in(agreed or [""])
                & (ReconciliationDifference.status == "open")
            )
            .returning(ReconciliationDifference.id)
        )
        newest = await StripeBalanceTxn.select(Max(StripeBalanceTxn.created).as_alias("m")).first()
        last_created = int((newest or {}).get("m") or since_created)
        await ReconciliationRun.update(
            {
                ReconciliationRun.finished_at: now,
                ReconciliationRun.last_created: last_created,
                ReconciliationRun.transactions: len(inserted),
                ReconciliationRun.differences: len(differences),
            }
        ).where(ReconciliationRun.id == run_id)
        await record(
            AuditRecord(
                actor,
                "stripe.reconciled",
                "stripe_reconciliation_run",
                run_id,
                data={
                    "transactions": len(inserted),
                    "compared": len(keys),
                    "differences": len(differences),
                    "resolved": len(resolved),
                },
            )
        )
    return RunSummary(run_id, len(inserted), len(keys), len(differences), len(resolved), dict(fees))


def _detail(d: Difference, gross_minor: int = 0, fee_minor: int = 0) -> str:
    if d.kind == "missing_in_ledger":
        text = "Stripe moved money the ledger has no entry for."
    elif d.kind == "missing_in_stripe":
        return "The ledger moved the Stripe balance but Stripe has no such transaction."
    else:
        text = "Stripe and the ledger moved different amounts (net of Stripe's fees)."
    if fee_minor and d.currency:

        def shown(minor: int) -> str:
            return format_money(Money.from_minor(minor, d.currency))

        text += f" Stripe: {shown(gross_minor)} gross, {shown(fee_minor)} in fees."
    return text


async def resolve_difference(difference_id: int, note: str, actor: Actor) -> None:
    """Staff accept a difference as explained (e.g. booked by hand), with a note."""
    if not note.strip():
        raise ValidationFailed({"note": "Say how the difference was explained or fixed."})
    async with transaction():
        row = (
            await ReconciliationDifference.select(ReconciliationDifference.status)
            .where(ReconciliationDifference.id == difference_id)
            .first()
        )
        if row is None:
            raise NotFound("difference")
        if row["status"] != "open":
            return
        await ReconciliationDifference.update(
            {
                ReconciliationDifference.status: "resolved",
                ReconciliationDifference.resolved_at: datetime.now(UTC),
                ReconciliationDifference.resolved_by: f"{actor.type}:{actor.id}",
                ReconciliationDifference.note: note[:2000],
            }
        ).where(ReconciliationDifference.id == difference_id)
        await record(
            AuditRecord(
                actor,
                "stripe.difference_resolved",
                "reconciliation_difference",
                difference_id,
                data={"note": note[:300]},
            )
        )


async def differences(status: str = "open") -> list[dict[str, Any]]:
    query = ReconciliationDifference.select().order_by(ReconciliationDifference.id, ascending=False)
    if status in ("open", "resolved"):
        query = query.where(ReconciliationDifference.status == status)
    return await query.limit(500)


async def recent_runs(limit: int = 10) -> list[dict[str, Any]]:
    return (
        await ReconciliationRun.select()
        .order_by(ReconciliationRun.id, ascending=False)
        .limit(limit)
    )
