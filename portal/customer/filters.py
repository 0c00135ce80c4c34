"""Parsing the invoice list's query string into an ``InvoiceFilter`` (with per-field
errors instead of exceptions), and building links that keep the current filters."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
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


def paging(
    get: Callable[[str], str], errors: dict[str, str], per_page_choices: Collection[int]
) -> tuple[int, int]:
    """(page, per_page) from ``page`` and ``per_page``: 1 and 25 when absent or invalid."""
    page = _int(get("page"), "page", errors, "page number") or 1
    per_page = _int(get("per_page"), "per_page", errors, "page size") or 25
    if per_page not in per_page_choices:
        errors["per_page"] = "Choose a page size from the list."
        per_page = 25
    return min(max(page, 1), MAX_PAGE), per_page


def date_range(
    get: Callable[[str], str], errors: dict[str, str]
) -> tuple[date | None, date | None]:
    """(from, to) from ``from`` and ``to``; an end before the start is dropped with an error."""
    start, end = _date(get("from"), "from", errors), _date(get("to"), "to", errors)
    if start and end and start > end:
        errors["to"] = "The end date must not be before the start date."
        end = None
    return start, end


def choice(
    get: Callable[[str], str],
    name: str,
    allowed: Collection[str],
    errors: dict[str, str],
    what: str,
) -> str | None:
    """The parameter ``name`` if it is one of ``allowed``; None (with an error if given)."""
    value = get(name) or None
    if value and value not in allowed:
        errors[name] = f"Choose a {what} from the list."
        return None
    return value


def account_id(get: Callable[[str], str], errors: dict[str, str]) -> int | None:
    """The ``account`` parameter: a billing account id, or None."""
    return _int(get("account"), "account", errors, "billing account")


def parse_invoice_filter(params: Mapping[str, str]) -> tuple[InvoiceFilter, dict[str, str]]:
    errors: dict[str, str] = {}
    get = lambda name: (params.get(name) or "").strip()  # noqa: E731
    status = choice(get, "status", STATUS_FILTERS, errors, "status")
    sort = choice(get, "sort", SORTS, errors, "sort order") or "-due_date"
    page, per_page = paging(get, errors, PER_PAGE_CHOICES)
    issued_from, issued_to = date_range(get, errors)
    q = get("q")
    if len(q) > 40:
        errors["q"] = "Search for at most 40 characters."
        q = ""
    return (
        InvoiceFilter(
            status=status,
            organization_id=_int(get("org"), "org", errors, "organization"),
            billing_account_id=account_id(get, errors),
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
