"""Reading the pay form: which invoices, what amounts, which way to pay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.money import AmountParseError, parse_amount
from core.payments.attempts import PayItem

MAX_SELECTED = 200


@dataclass
class PayForm:
    selected: list[int] = field(default_factory=list)
    raw_amounts: dict[int, str] = field(default_factory=dict)
    method: str = "checkout"
    idempotency_key: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def fingerprint_payload(self) -> dict[str, Any]:
        return {
            "pay": sorted(self.selected),
            "amounts": {str(i): self.raw_amounts.get(i, "") for i in sorted(self.selected)},
            "method": self.method,
        }


def _int(value: str) -> int | None:
    value = value.strip()
    if not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if 0 < number <= 2**31 - 1 else None


def read_form(data: Any) -> PayForm:
    """From a multi-dict (form or query parameters)."""
    form = PayForm()
    get = data.get
    ids: list[int] = []
    for raw in data.getall("pay", [])[:MAX_SELECTED]:
        number = _int(str(raw))
        if number is None:
            form.errors["invoices"] = "One of the chosen invoices was not understood."
        elif number not in ids:
            ids.append(number)
    form.selected = ids
    for key in ("amount_" + str(i) for i in ids):
        form.raw_amounts[int(key[7:])] = str(get(key) or "")[:40]
    form.method = str(get("method") or "checkout")[:40]
    form.idempotency_key = str(get("idempotency_key") or "")[:255]
    return form


def items_from(
    form: PayForm, invoices: Mapping[int, Mapping[str, Any]]
) -> tuple[list[PayItem], dict[str, str]]:
    """Parse each chosen invoice's amount in its currency. Invoices missing from
    ``invoices`` are left out here (the caller decides what their absence means)."""
    items: list[PayItem] = []
    errors = dict(form.errors)
    for invoice_id in form.selected:
        inv = invoices.get(invoice_id)
        if inv is None:
            continue
        raw = form.raw_amounts.get(invoice_id, "").strip()
        try:
            money = parse_amount(raw, inv["currency"])
        except AmountParseError as exc:
            errors[f"amount_{invoice_id}"] = f"{inv['number']}: {exc}"
            continue
        items.append(PayItem(invoice_id, money.to_minor()))
    return items, errors


def totals_by_currency(items: Sequence[PayItem], currency_of: Mapping[int, str]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in items:
        code = currency_of[item.invoice_id]
        totals[code] = totals.get(code, 0) + item.amount_minor
    return dict(sorted(totals.items()))
