"""Pure rules of paying invoices: what an attempt may contain, when it needs approval,
and how settled money is split between invoices and unapplied cash."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """What the rules need to know about an invoice someone wants to pay."""

    id: int
    number: str
    currency: str
    balance_minor: int  # open balance now
    in_flight_minor: int = 0  # asked for by other attempts not finished yet


def check_items(
    items: Sequence[tuple[int, int]], invoices: Mapping[int, OpenInvoice]
) -> tuple[str, int]:
    """Validate (invoice id, amount) pairs against the open invoices. Returns the one
    currency and the total. Refuses: nothing chosen, an invoice twice, an amount of zero
    or less, more than the open balance minus what other attempts are already collecting,
    and several currencies in one charge."""
    if not items:
        raise ValidationFailed({"invoices": "Choose at least one invoice to pay."})
    errors: dict[str, str] = {}
    seen: set[int] = set()
    for invoice_id, amount in items:
        field = f"amount_{invoice_id}"
        inv = invoices.get(invoice_id)
        if invoice_id in seen:
            errors["invoices"] = "Each invoice may appear only once."
            continue
        seen.add(invoice_id)
        if inv is None:
            errors[field] = "This invoice is not open."
            continue
        if amount <= 0:
            errors[field] = f"Enter an amount above zero for {inv.number}."
            continue
        available = inv.balance_minor - inv.in_flight_minor
        if amount > available:
            if inv.in_flight_minor:
                errors[field] = (
                    f"The amount exceeds what is left to pay on {inv.number}: other payments "
                    "for it are already in progress."
                )
            else:
                errors[field] = f"The amount exceeds the open balance of {inv.number}."
    currencies = sorted({invoices[i].currency for i, _ in items if i in invoices})
    if len(currencies) > 1:
        errors["currency"] = (
            "This payment mixes currencies (" + ", ".join(currencies) + "). Pay invoices of "
            "each currency in a separate payment."
        )
    if errors:
        raise ValidationFailed(errors)
    return currencies[0], sum(a for _, a in items)


def nearest_threshold(path: str, thresholds: Mapping[int, int | None]) -> int | None:
    """The approval threshold of a node: its own, else its nearest ancestor's (``path`` is
    the materialized path ``/root/…/node/``); None when no node on the way has one."""
    ids = [int(p) for p in path.strip("/").split("/") if p]
    for node_id in reversed(ids):
        value = thresholds.get(node_id)
        if value is not None:
            return value
    return None


def approval_required(amount_minor: int, thresholds: Iterable[int | None]) -> bool:
    """An attempt needs approval when its amount exceeds the strictest threshold that
    applies to any of its billing accounts."""
    applicable = [t for t in thresholds if t is not None]
    return bool(applicable) and amount_minor > min(applicable)


def settlement_split(
    items: Sequence[tuple[int, int]], open_balances: Mapping[int, int]
) -> tuple[list[tuple[int, int]], int]:
    """Split money collected for ``items`` (invoice id, amount) of one billing account:
    each invoice gets at most its CURRENT open balance (0 if no longer open); what is
    left is unapplied cash on the account. Returns (allocations > 0, unapplied)."""
    allocations: list[tuple[int, int]] = []
    unapplied = 0
    for invoice_id, amount in items:
        applied = max(0, min(amount, open_balances.get(invoice_id, 0)))
        if applied:
            allocations.append((invoice_id, applied))
        unapplied += amount - applied
    return allocations, unapplied
