"""Parsing the invoice list's query string into an ``InvoiceFilter`` (with per-field
errors instead of exceptions), and building links that keep the current filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import date
from typing import Any
from urllib.parse import urlencode

from core.invoicing.queries import PER_PAGE_CHOICES, SORTS, STATUS_FILTERS, InvoiceFilter

MAX_PAGE = 100_000


def _int(raw: str, field: str, errors: dict[str, str], label: str) -> int | None:
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        errors[field] = f"Choose a valid {label}."
        return None
    return int(raw)


def _date(raw: str, field: str, errors: dict[str, str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[field] = "Enter a date as YYYY-MM-DD."
        return None


def parse_invoice_filter(params: Mapping[str, str]) -> tuple[InvoiceFilter, dict[str, str]]:
    errors: dict[str, str] = {}
    get = lambda name: (params.get(name) or "").strip()  # noqa: E731
    status = get("status") or None
    if status and status not in STATUS_FILTERS:
        errors["status"] = "Choose a status from the list."
        status = None
    sort = get("sort") or "-due_date"
    if sort not in SORTS:
        errors["sort"] = "Choose a sort order from the list."
        sort = "-due_date"
    page = _int(get("page"), "page", errors, "page number") or 1
    page = min(max(page, 1), MAX_PAGE)
    per_page = _int(get("per_page"), "per_page", errors, "page size") or 25
    if per_page not in PER_PAGE_CHOICES:
        errors["per_page"] = "Choose a page size from the list."
        per_page = 25
    issued_from = _date(get("from"), "from", errors)
    issued_to = _date(get("to"), "to", errors)
    if issued_from and issued_to and issued_from > issued_to:
        errors["to"] = "The end date must not be before the start date."
        issued_to = None
    q = get("q")
    if len(q) > 40:
        errors["q"] = "Search for at most 40 characters."
        q = ""
    return (
        InvoiceFilter(
            status=status,
            organization_id=_int(get("org"), "org", errors, "organization"),
            billing_account_id=_int(get("account"), "account", errors, "billing account"),
            issued_from=issued_from,
            issued_to=issued_to,
            q=q,
            sort=sort,
            page=page,
            per_page=per_page,
        ),
        errors,
    )


_PARAM_NAMES = {
    "status": "status",
    "organization_id": "org",
    "billing_account_id": "account",
    "issued_from": "from",
    "issued_to": "to",
    "q": "q",
    "sort": "sort",
    "page": "page",
    "per_page": "per_page",
}
_DEFAULTS = asdict(InvoiceFilter())


def dataclass_query(
    f: Any, names: Mapping[str, str], defaults: Mapping[str, Any], **changes: object
) -> str:
    """Query string for the filter dataclass ``f`` with ``changes`` applied (a change of
    anything but the page goes back to page 1), named by ``names``, omitting defaults."""
    if changes and "page" not in changes:
        changes["page"] = 1
    current = asdict(replace(f, **changes))
    pairs = [
        (names[k], str(v)) for k, v in current.items() if v not in (None, "") and v != defaults[k]
    ]
    return urlencode(pairs)


def filter_query(f: InvoiceFilter, **changes: object) -> str:
    """Query string for ``f`` with ``changes`` applied, omitting default values."""
    return dataclass_query(f, _PARAM_NAMES, _DEFAULTS, **changes)
