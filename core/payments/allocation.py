"""Pure allocation rules: what part of a payment may go to which invoice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    invoice_id: int
    amount_minor: int


def check_allocations(
    payment_minor: int, requests: Sequence[AllocationRequest], balances: dict[int, int]
) -> int:
    """Validate allocations against the payment and each invoice's open balance.

    Returns what stays unapplied. Never lets allocations exceed the payment or a
    balance, nor allocate zero or negative amounts.
    """
    if payment_minor <= 0:
        raise ValidationFailed({"amount": "A payment must be more than zero."})
    seen: set[int] = set()
    for req in requests:
        if req.invoice_id in seen:
            raise ValidationFailed({"allocations": "Each invoice may appear only once."})
        seen.add(req.invoice_id)
        if req.amount_minor <= 0:
            raise ValidationFailed({"allocations": "Each allocation must be more than zero."})
        if req.invoice_id not in balances:
            raise ValidationFailed({"allocations": f"Invoice {req.invoice_id} is not open."})
        if req.amount_minor > balances[req.invoice_id]:
            raise ValidationFailed(
                {"allocations": f"Allocation exceeds the open balance of invoice {req.invoice_id}."}
            )
    applied = sum(r.amount_minor for r in requests)
    if applied > payment_minor:
        raise ValidationFailed({"allocations": "Allocations exceed the payment amount."})
    return payment_minor - applied
