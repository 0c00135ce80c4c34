"""The payment history's query string ⇄ ``PaymentFilter`` (per-field errors instead of
exceptions; links that keep the current filters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from core.wallet.history import METHOD_FILTERS, PER_PAGE_CHOICES, STATUS_FILTERS, PaymentFilter
from portal.customer.filters import account_id, choice, dataclass_query, date_range, paging


def parse_payment_filter(params: Mapping[str, str]) -> tuple[PaymentFilter, dict[str, str]]:
    errors: dict[str, str] = {}
    get = lambda name: (params.get(name) or "").strip()  # noqa: E731
    method = choice(get, "method", METHOD_FILTERS, errors, "payment method")
    status = choice(get, "status", STATUS_FILTERS, errors, "status")
    page, per_page = paging(get, errors, PER_PAGE_CHOICES)
    received_from, received_to = date_range(get, errors)
    return (
        PaymentFilter(
            received_from=received_from,
            received_to=received_to,
            billing_account_id=account_id(get, errors),
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
