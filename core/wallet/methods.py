"""Saved payment methods of a customer group."""

from __future__ import annotations

from dataclasses import dataclass

from core.wallet.tables import SavedPaymentMethod


@dataclass(frozen=True, slots=True)
class SavedMethod:
    id: int
    stripe_payment_method: str
    stripe_customer: str
    kind: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    is_default: bool


async def saved_methods(root_org_id: int) -> list[SavedMethod]:
    """The group's methods that are not removed, default first."""
    rows = await (
        SavedPaymentMethod.select(
            SavedPaymentMethod.id,
            SavedPaymentMethod.stripe_payment_method,
            SavedPaymentMethod.stripe_customer,
            SavedPaymentMethod.kind,
            SavedPaymentMethod.brand,
            SavedPaymentMethod.last4,
            SavedPaymentMethod.exp_month,
            SavedPaymentMethod.exp_year,
            SavedPaymentMethod.is_default,
        )
        .where(
            (SavedPaymentMethod.organization == root_org_id)
            & SavedPaymentMethod.removed_at.is_null()
        )
        .order_by(SavedPaymentMethod.is_default, ascending=False)
        .order_by(SavedPaymentMethod.id)
    )
    return [SavedMethod(**r) for r in rows]
