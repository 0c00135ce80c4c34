"""Jinja2 set-up: filters for money and dates, and the SRI hashes of vendored assets."""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment
from litestar.plugins.jinja import JinjaTemplateEngine

from core.money import Money, format_money

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


@lru_cache(maxsize=65536)
def _formatted(minor: int, currency_code: str, locale: str) -> str:
    return format_money(Money.from_minor(minor, currency_code), locale)


def money(minor: int | None, currency_code: str, locale: str = "en_US") -> str:
    """Formatted amount; a pure function of its arguments, so repeated amounts (totals,
    balances shown twice, the same price on many lines) are formatted once."""
    if minor is None:
        return ""
    return _formatted(int(minor), currency_code, locale)


def nice_date(value: date | datetime | str | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.strftime("%d %b %Y")


def configure(engine: JinjaTemplateEngine) -> None:
    env: Environment = engine.engine
    env.filters["money"] = money
    env.filters["nice_date"] = nice_date
    sri: dict[str, Any] = json.loads((STATIC_DIR / "vendor" / "sri.json").read_text())
    env.globals["sri"] = sri
    env.globals["status_labels"] = {
        "draft": "Draft",
        "open": "Open",
        "paid": "Paid",
        "void": "Void",
        "uncollectible": "Uncollectible",
        "overdue": "Overdue",
    }
