"""Exchange-rate services: manual entry, ECB file import, and the rate lookup that
finalization freezes onto an invoice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from core.audit.log import Actor, AuditRecord, record
from core.db import transaction
from core.errors import ValidationFailed
from core.fx.rates import (
    EcbFormatError,
    RateError,
    check_rate,
    cross_via_eur,
    invert,
    parse_ecb_xml,
)
from core.fx.tables import ExchangeRate
from core.money import currency

MAX_RATE_AGE_DAYS = 7  # weekends and holidays: the ECB publishes on TARGET working days
MAX_UPLOAD_BYTES = 5_000_000  # the full ECB history since 1999 is about 600 KB


@dataclass(frozen=True, slots=True)
class RateQuote:
    rate: Decimal
    source: str  # identity, manual, ecb, ecb:inverse, ecb:cross-EUR ...
    rate_date: date


@dataclass(frozen=True, slots=True)
class ImportResult:
    days: int
    inserted: int
    already_present: int


def _actor_ref(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"[:64]


def _code(value: str, field: str) -> str:
    code = (value or "").strip().upper()
    try:
        currency(code)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed({field: "Enter a known ISO 4217 currency code, e.g. EUR."}) from exc
    return code


async def add_manual_rate(
    base: str, quote: str, rate: str | Decimal, rate_date: date, actor: Actor
) -> int:
    """Record (or correct) the manual rate of a pair for a day. Invoices already
    finalized keep the rate they froze."""
    b, q = _code(base, "base"), _code(quote, "quote")
    if b == q:
        raise ValidationFailed({"quote": "Base and quote must differ."})
    try:
        value = check_rate(Decimal(str(rate).strip()))
    except InvalidOperation as exc:
        raise ValidationFailed({"rate": "Enter a number such as 1.0842."}) from exc
    except RateError as exc:
        raise ValidationFailed({"rate": f"{str(exc).capitalize()}."}) from exc
    async with transaction():
        existing = (
            await ExchangeRate.select(ExchangeRate.id, ExchangeRate.rate)
            .where(
                (ExchangeRate.base == b)
                & (ExchangeRate.quote == q)
                & (ExchangeRate.rate_date == rate_date)
                & (ExchangeRate.source == "manual")
            )
            .first()
        )
        if existing:
            rate_id = int(existing["id"])
            await ExchangeRate.update(
                {ExchangeRate.rate: value, ExchangeRate.created_by: _actor_ref(actor)}
            ).where(ExchangeRate.id == rate_id)
        else:
            [row] = await ExchangeRate.insert(
                ExchangeRate(
                    base=b,
                    quote=q,
                    rate=value,
                    rate_date=rate_date,
                    source="manual",
                    created_by=_actor_ref(actor),
                    created_at=datetime.now(UTC),
                )
            )
            rate_id = int(row["id"])
        await record(
            AuditRecord(
                actor,
                "fx.rate_set",
                "exchange_rate",
                rate_id,
                data={
                    "pair": f"{b}/{q}",
                    "rate": str(value),
                    "date": rate_date.isoformat(),
                    "previous": str(existing["rate"]) if existing else None,
                },
            )
        )
    return rate_id


async def import_ecb(data: bytes, actor: Actor) -> ImportResult:
    """Import an ECB reference-rates file (daily or history). All or nothing; running it
    again with the same file inserts nothing new."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValidationFailed({"file": "The file is larger than 5 MB."})
    try:
        rates = parse_ecb_xml(data)
    except EcbFormatError as exc:
        raise ValidationFailed({"file": f"Not an ECB reference-rates file: {exc}."}) from exc
    now = datetime.now(UTC)
    who = _actor_ref(actor)
    async with transaction():
        before = await ExchangeRate.count().where(ExchangeRate.source == "ecb")
        chunk = 1000
        for start in range(0, len(rates), chunk):
            await ExchangeRate.insert(
                *[
                    ExchangeRate(
                        base="EUR",
                        quote=r.currency,
                        rate=r.rate,
                        rate_date=r.rate_date,
                        source="ecb",
                        created_by=who,
                        created_at=now,
                    )
                    for r in rates[start : start + chunk]
                ]
            ).on_conflict(action="DO NOTHING")
        inserted = await ExchangeRate.count().where(ExchangeRate.source == "ecb") - before
        result = ImportResult(
            days=len({r.rate_date for r in rates}),
            inserted=inserted,
            already_present=len(rates) - inserted,
        )
        await record(
            AuditRecord(
                actor,
                "fx.ecb_imported",
                "exchange_rate",
                "",
                data={
                    "days": result.days,
                    "inserted": result.inserted,
                    "already_present": result.already_present,
                    "latest": max(r.rate_date for r in rates).isoformat(),
                },
            )
        )
    return result


def pick_rate(base: str, quote: str, rows: list[dict[str, object]], on: date) -> RateQuote | None:
    """Pure choice among stored rows (base, quote, rate, rate_date, source) dated on or
    before ``on``: the latest date wins; on a tie a direct rate beats an inverse, which
    beats a cross rate via EUR, and a manual rate beats the ECB's."""
    if base == quote:
        return RateQuote(Decimal(1), "identity", on)
    candidates: list[tuple[date, int, RateQuote]] = []
    by_day: dict[tuple[date, str], dict[str, Decimal]] = {}
    for row in rows:
        day = row["rate_date"]
        assert isinstance(day, date)
        if day > on:
            continue
        rb, rq, src = str(row["base"]), str(row["quote"]), str(row["source"])
        value = Decimal(str(row["rate"]))
        manual = 0 if src == "manual" else 1
        if (rb, rq) == (base, quote):
            candidates.append((day, 0 + manual, RateQuote(value, src, day)))
        elif (rb, rq) == (quote, base):
            candidates.append((day, 2 + manual, RateQuote(invert(value), f"{src}:inverse", day)))
        if rb == "EUR":
            by_day.setdefault((day, src), {})[rq] = value
    for (day, src), quotes in by_day.items():
        if base in quotes and quote in quotes:
            rate = cross_via_eur(quotes[base], quotes[quote])
            candidates.append((day, 4, RateQuote(rate, f"{src}:cross-EUR", day)))
    if not candidates:
        return None
    candidates.sort(key=lambda c: (-c[0].toordinal(), c[1]))
    return candidates[0][2]


async def find_rate(
    base: str, quote: str, on: date, max_age_days: int | None = MAX_RATE_AGE_DAYS
) -> RateQuote | None:
    """The rate to use for ``base → quote`` on ``on`` (None when none is recent enough;
    ``max_age_days=None``: the latest rate dated on or before ``on``, however old)."""
    if base == quote:
        return RateQuote(Decimal(1), "identity", on)
    pair = (ExchangeRate.base == base) & (ExchangeRate.quote == quote)
    reverse = (ExchangeRate.base == quote) & (ExchangeRate.quote == base)
    via_eur = (ExchangeRate.base == "EUR") & ExchangeRate.quote.is_in([base, quote])
    rows = ExchangeRate.select(
        ExchangeRate.base,
        ExchangeRate.quote,
        ExchangeRate.rate,
        ExchangeRate.rate_date,
        ExchangeRate.source,
    ).where((pair | reverse | via_eur) & (ExchangeRate.rate_date <= on))
    if max_age_days is not None:
        rows = rows.where(ExchangeRate.rate_date >= on - timedelta(days=max_age_days))
    else:  # the newest rows are enough to pick from: a few days' worth of every source
        rows = rows.order_by(ExchangeRate.rate_date, ascending=False).limit(50)
    return pick_rate(base, quote, await rows, on)


async def list_rates(limit: int = 200, base: str = "", quote: str = "") -> list[dict[str, object]]:
    query = ExchangeRate.select().order_by(ExchangeRate.rate_date, ascending=False)
    if base:
        query = query.where(ExchangeRate.base == base.upper())
    if quote:
        query = query.where(ExchangeRate.quote == quote.upper())
    return await query.order_by(ExchangeRate.id, ascending=False).limit(limit)
