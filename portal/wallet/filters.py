"""The payment history's query string ⇄ ``PaymentFilter`` (per-field errors instead of
exceptions; links that keep the current filters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from core.wallet.history import METHOD_FILTERS, PER_PAGE_CHOICES, STATUS_FILTERS, PaymentFilter
from portal.customer.filters import MAX_PAGE, _date, _int, dataclass_query


def parse_payment_filter(params: Mapping[str, str]) -> tuple[PaymentFilter, dict[str, str]]:
    errors: dict[str, str] = {}
    get = lambda name: (params.get(name) or "").strip()  # noqa: E731
    method = get("method") or None
    if method and method not in METHOD_FILTERS:
        errors["method"] = "Choose a payment method from the list."
        method = None
    status = get("status") or None
    if status and status not in STATUS_FILTERS:
        errors["status"] = "Choose a status from the list."
        status = None
    page = _int(get("page"), "page", errors, "page number") or 1
    page = min(max(page, 1), MAX_PAGE)
    per_page = _int(get("per_page"), "per_page", errors, "page size") or 25
    if per_page not in PER_PAGE_CHOICES:
        errors["per_page"] = "Choose a page size from the list."
        per_page = 25
    received_from = _date(get("from"), "from", errors)
    received_to = _date(get("to"), "to", errors)
    if received_from and received_to and received_from > received_to:
        errors["to"] = "The end date must not be before the start date."
        received_to = None
    return (
        PaymentFilter(
            received_from=received_from,
            received_to=received_to,
            billing_account_id=_int(get("account"), "account", errors, "billing account"),
            method=method,
            status=status,
            page=page,
            per_page=per_page,
        ),
        errors,
    )


_PARAM_NAMES = {
    "received_from": "from",
    "received_to": "to",
    "billing_account_id": "account",
    "method": "method",
    "status": "status",
    "page": "page",
    "per_page": "per_page",
}
_DEFAULTS = asdict(PaymentFilter())


def filter_query(f: PaymentFilter, **changes: object) -> str:
    """Query string for ``f`` with ``changes`` applied, omitting default values."""
    return dataclass_query(f, _PARAM_NAMES, _DEFAULTS, **changes)
