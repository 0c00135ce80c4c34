"""Tax providers behind one interface: the built-in rules provider and an AvaTax-style
HTTP provider, with a circuit breaker and the fallback that flags tax as estimated.

The HTTP provider POSTs JSON to ``{base_url}/api/v2/transactions/create``::

    {"type": "SalesInvoice", "code": "<invoice id>", "companyCode": "...",
     "date": "2026-11-22", "customerCode": "...", "currencyCode": "EUR",
     "addresses": {"shipFrom": {"country": "DE"},
                   "shipTo": {"country": "FR", "region": ""}},
     "businessIdentificationNo": "<buyer VAT id>", "exemptionNo": "<certificate>",
     "lines": [{"number": "1", "amount": "100.00", "taxCode": "STD"}]}

and expects ``{"lines": [{"lineNumber": "1", "tax": "19.00", "rate": "0.19",
"taxCode": "STD"}], "note": "..."}`` with one answer per line. The returned tax is
rounded once, half-even, to the minor unit. Any transport error, timeout, non-2xx
status or malformed answer is a ``TaxProviderError``; the caller then falls back to
the rules provider and flags the tax as estimated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Protocol

import httpx

from core.money import Money, currency
from core.tax.rules import (
    DEFAULT_RATES,
    TaxContext,
    TaxLineIn,
    TaxLineOut,
    TaxResult,
    compute,
)


class TaxProviderError(RuntimeError):
    """The provider could not compute tax (unreachable, slow, error, bad answer)."""


@dataclass(frozen=True, slots=True)
class TaxRequest:
    reference: str  # the invoice id
    currency: str
    issue_date: date
    context: TaxContext
    lines: tuple[TaxLineIn, ...]
    customer_code: str = ""


class TaxProvider(Protocol):
    name: str

    async def calculate(self, request: TaxRequest) -> TaxResult: ...


@dataclass
class RulesProvider:
    rates: Mapping[tuple[str, str, str], Decimal] = field(
        default_factory=lambda: dict(DEFAULT_RATES)
    )
    name: str = "rules"

    async def calculate(self, request: TaxRequest) -> TaxResult:
        return compute(request.context, request.lines, request.currency, self.rates)


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; while open (``cooldown`` seconds)
    calls are not attempted; then one trial call is let through (half-open)."""

    threshold: int = 3
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        return self.clock() - self.opened_at >= self.cooldown

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.allow() else "open"


_BREAKERS: dict[str, CircuitBreaker] = {}


def breaker_for(base_url: str) -> CircuitBreaker:
    """One breaker per provider URL, per process."""
    return _BREAKERS.setdefault(base_url, CircuitBreaker())


@dataclass
class HttpTaxProvider:
    base_url: str
    timeout: float = 2.0
    company_code: str = ""
    breaker: CircuitBreaker | None = None
    transport: httpx.AsyncBaseTransport | None = None
    name: str = "http"

    def payload(self, request: TaxRequest) -> dict[str, object]:
        cur = currency(request.currency)
        ctx = request.context
        return {
            "type": "SalesInvoice",
            "code": request.reference,
            "companyCode": self.company_code,
            "date": request.issue_date.isoformat(),
            "customerCode": request.customer_code,
            "currencyCode": request.currency,
            "addresses": {
                "shipFrom": {"country": ctx.seller_country},
                "shipTo": {"country": ctx.buyer_country, "region": ctx.buyer_region},
            },
            "businessIdentificationNo": ctx.buyer_vat_id,
            "exemptionNo": ctx.exemption_ref,
            "lines": [
                {
                    "number": str(i),
                    "amount": str(Money.from_minor(line.amount_minor, cur).amount),
                    "taxCode": line.tax_code or "STD",
                }
                for i, line in enumerate(request.lines, start=1)
            ],
        }

    def parse(self, request: TaxRequest, body: object) -> TaxResult:
        cur = currency(request.currency)
        if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
            raise TaxProviderError("answer without a 'lines' list")
        answers = {
            str(item.get("lineNumber")): item for item in body["lines"] if isinstance(item, dict)
        }
        out = []
        for i, line in enumerate(request.lines, start=1):
            item = answers.get(str(i))
            if item is None:
                raise TaxProviderError(f"no answer for line {i}")
            try:
                tax = Money(Decimal(str(item["tax"])), cur).round(ROUND_HALF_EVEN)
                rate = Decimal(str(item.get("rate", "0")))
            except (KeyError, InvalidOperation, TypeError, ValueError) as exc:
                raise TaxProviderError(f"bad tax or rate on line {i}") from exc
            if not rate.is_finite() or rate < 0 or rate >= 10:
                raise TaxProviderError(f"bad rate on line {i}")
            code = str(item.get("taxCode") or line.tax_code or "STD")[:32]
            out.append(TaxLineOut(rate, tax.to_minor(), code))
        note = body.get("note", "")
        return TaxResult(tuple(out), "calculated", str(note)[:200], provider=self.name)

    async def calculate(self, request: TaxRequest) -> TaxResult:
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise TaxProviderError("circuit open after repeated failures")
        url = self.base_url.rstrip("/") + "/api/v2/transactions/create"
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                response = await client.post(url, json=self.payload(request))
            if response.status_code // 100 != 2:
                raise TaxProviderError(f"HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError as exc:
                raise TaxProviderError("answer is not JSON") from exc
            result = self.parse(request, body)
        except httpx.TimeoutException as exc:
            if breaker is not None:
                breaker.failure()
            raise TaxProviderError(f"timed out after {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            if breaker is not None:
                breaker.failure()
            raise TaxProviderError(f"unreachable ({type(exc).__name__})") from exc
        except TaxProviderError:
            if breaker is not None:
                breaker.failure()
            raise
        if breaker is not None:
            breaker.success()
        return result


async def calculate_with_fallback(
    primary: TaxProvider, fallback: TaxProvider, request: TaxRequest
) -> TaxResult:
    """The primary provider's answer, or the fallback's flagged ``estimated``."""
    if primary is fallback:
        return await primary.calculate(request)
    try:
        return await primary.calculate(request)
    except TaxProviderError as exc:
        result = await fallback.calculate(request)
        note = f"Tax estimated ({primary.name} provider failed: {exc})"
        if result.note:
            note = f"{result.note}. {note}"
        return replace(result, status="estimated", note=note[:200], provider=fallback.name)
