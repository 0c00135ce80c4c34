"""Tax services: provider settings, rate overrides, exemptions, and computing tax for
draft invoices (with the fallback that flags tax as estimated)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from core.audit.log import Actor, AuditRecord, record
from core.db import for_update, transaction
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import BillingAccount, CustomerOrganization
from core.invoicing.bulk import among, update_rows
from core.invoicing.tables import Invoice, InvoiceLine
from core.tax.providers import (
    HttpTaxProvider,
    RulesProvider,
    TaxProvider,
    TaxProviderError,
    TaxRequest,
    breaker_for,
    calculate_with_fallback,
)
from core.tax.rules import (
    DEFAULT_RATES,
    MissingRateError,
    TaxContext,
    TaxLineIn,
    TaxResult,
    compute,
)
from core.tax.tables import TaxExemption, TaxProviderSettings, TaxRate

HTTP_CONCURRENCY = 8  # requests in flight to the HTTP tax provider per batch


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    provider: str = "rules"  # rules | http
    base_url: str = ""
    timeout_ms: int = 2000
    company_code: str = ""


def _who(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"[:64]


async def load_settings() -> ProviderSettings:
    row = await TaxProviderSettings.select().order_by(TaxProviderSettings.id).first()
    if row is None:
        return ProviderSettings()
    return ProviderSettings(
        row["provider"], row["base_url"], int(row["timeout_ms"]), row["company_code"]
    )


async def save_settings(
    provider: str, base_url: str, timeout_ms: str | int, company_code: str, actor: Actor
) -> ProviderSettings:
    errors: dict[str, str] = {}
    provider = (provider or "").strip()
    if provider not in ("rules", "http"):
        errors["provider"] = "Choose the rules provider or the HTTP provider."
    base_url = (base_url or "").strip()
    if provider == "http":
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(base_url) > 300:
            errors["base_url"] = "Enter the provider's base URL, e.g. https://tax.example.com."
    try:
        timeout = int(str(timeout_ms).strip())
        if not 100 <= timeout <= 30000:
            raise ValueError
    except ValueError:
        errors["timeout_ms"] = "Enter a timeout between 100 and 30000 milliseconds."
        timeout = 2000
    if len(company_code or "") > 64:
        errors["company_code"] = "Keep the company code under 64 characters."
    if errors:
        raise ValidationFailed(errors)
    values = ProviderSettings(provider, base_url, timeout, (company_code or "").strip())
    async with transaction():
        row = await for_update(TaxProviderSettings.select(TaxProviderSettings.id)).first()
        data = {
            TaxProviderSettings.provider: values.provider,
            TaxProviderSettings.base_url: values.base_url,
            TaxProviderSettings.timeout_ms: values.timeout_ms,
            TaxProviderSettings.company_code: values.company_code,
            TaxProviderSettings.updated_by: _who(actor),
            TaxProviderSettings.updated_at: datetime.now(UTC),
        }
        if row is None:
            await TaxProviderSettings.insert(
                TaxProviderSettings(**{col._meta.name: v for col, v in data.items()})
            )
        else:
            await TaxProviderSettings.update(data).where(TaxProviderSettings.id == row["id"])
        await record(
            AuditRecord(
                actor,
                "tax.settings_changed",
                "tax_provider_settings",
                "",
                data={"provider": values.provider, "base_url": values.base_url},
            )
        )
    return values


async def rate_table() -> dict[tuple[str, str, str], Decimal]:
    """Built-in rates with the stored overrides applied."""
    rates = dict(DEFAULT_RATES)
    for row in await TaxRate.select(
        TaxRate.country, TaxRate.region, TaxRate.tax_code, TaxRate.rate
    ):
        rates[(row["country"], row["region"], row["tax_code"])] = Decimal(str(row["rate"]))
    return rates


async def set_rate(
    country: str, region: str, tax_code: str, rate: str, description: str, actor: Actor
) -> None:
    errors: dict[str, str] = {}
    country = (country or "").strip().upper()
    region = (region or "").strip().upper()
    tax_code = (tax_code or "").strip().upper() or "STD"
    if len(country) != 2 or not country.isalpha():
        errors["country"] = "Enter a two-letter country code, e.g. DE."
    if len(region) > 8 or (region and not region.isalnum()):
        errors["region"] = "Enter a region code of up to 8 letters or digits, or leave it empty."
    if len(tax_code) > 32 or not tax_code.replace("_", "").isalnum():
        errors["tax_code"] = "Enter a tax code of letters, digits and _ (up to 32)."
    try:
        value = Decimal((rate or "").strip().rstrip("%")) / 100
        if (
            not value.is_finite()
            or not 0 <= value < 1
            or value != value.quantize(Decimal("0.000001"))
        ):
            raise InvalidOperation
    except InvalidOperation:
        errors["rate"] = "Enter a percentage between 0 and 100 with up to 4 decimals, e.g. 19."
        value = Decimal(0)
    if errors:
        raise ValidationFailed(errors)
    async with transaction():
        where = (
            (TaxRate.country == country)
            & (TaxRate.region == region)
            & (TaxRate.tax_code == tax_code)
        )
        existing = await for_update(TaxRate.select(TaxRate.id, TaxRate.rate).where(where)).first()
        now = datetime.now(UTC)
        if existing:
            await TaxRate.update(
                {
                    TaxRate.rate: value,
                    TaxRate.description: (description or "")[:200],
                    TaxRate.updated_by: _who(actor),
                    TaxRate.updated_at: now,
                }
            ).where(TaxRate.id == existing["id"])
        else:
            await TaxRate.insert(
                TaxRate(
                    country=country,
                    region=region,
                    tax_code=tax_code,
                    rate=value,
                    description=(description or "")[:200],
                    updated_by=_who(actor),
                    updated_at=now,
                )
            )
        await record(
            AuditRecord(
                actor,
                "tax.rate_set",
                "tax_rate",
                f"{country}/{region}/{tax_code}",
                data={
                    "rate": str(value),
                    "previous": str(existing["rate"]) if existing else None,
                },
            )
        )


async def add_exemption(
    organization_id: int, certificate_ref: str, valid_until: date | None, actor: Actor
) -> int:
    ref = (certificate_ref or "").strip()
    if not ref or len(ref) > 100:
        raise ValidationFailed({"certificate_ref": "Enter the exemption certificate reference."})
    if not await CustomerOrganization.exists().where(CustomerOrganization.id == organization_id):
        raise NotFound("organization")
    async with transaction():
        [row] = await TaxExemption.insert(
            TaxExemption(
                organization=organization_id,
                certificate_ref=ref,
                valid_until=valid_until,
                created_by=_who(actor),
                created_at=datetime.now(UTC),
            )
        )
        await record(
            AuditRecord(
                actor,
                "tax.exemption_added",
                "customer_organization",
                organization_id,
                data={"certificate_ref": ref, "valid_until": str(valid_until or "")},
            )
        )
    return int(row["id"])


async def set_organization_region(account_code: str, region: str, actor: Actor) -> tuple[int, str]:
    """Set the tax region (state, province: e.g. ``CA``) of the customer organization of
    the billing account ``account_code``; empty clears it. Drafts taxed from then on use
    the region's rate where one exists (``(country, region, tax code)``), the country's
    otherwise. Returns (organization id, region)."""
    code = (account_code or "").strip()
    value = (region or "").strip().upper()
    errors: dict[str, str] = {}
    if len(value) > 8 or (value and not value.isalnum()):
        errors["region"] = "Enter a region code of up to 8 letters or digits, or leave it empty."
    account = (
        await BillingAccount.select(BillingAccount.organization)
        .where(BillingAccount.code == code[:32])
        .first()
        if code
        else None
    )
    if account is None:
        errors["account_code"] = "No billing account has this code."
    if errors:
        raise ValidationFailed(errors)
    assert account is not None
    org_id = int(account["organization"])
    async with transaction():
        row = await for_update(
            CustomerOrganization.select(
                CustomerOrganization.country, CustomerOrganization.region
            ).where(CustomerOrganization.id == org_id)
        ).first()
        if row is None:
            raise NotFound("organization")
        if row["region"] != value:
            await CustomerOrganization.update({CustomerOrganization.region: value}).where(
                CustomerOrganization.id == org_id
            )
            await record(
                AuditRecord(
                    actor,
                    "tax.region_set",
                    "customer_organization",
                    org_id,
                    data={"country": row["country"], "region": value, "previous": row["region"]},
                )
            )
    return org_id, value


async def organizations_with_region(limit: int = 200) -> list[dict[str, Any]]:
    """Customer organizations with a tax region, for the staff tax page."""
    return (
        await CustomerOrganization.select(
            CustomerOrganization.id,
            CustomerOrganization.name,
            CustomerOrganization.country,
            CustomerOrganization.region,
        )
        .where(CustomerOrganization.region != "")
        .order_by(CustomerOrganization.name)
        .limit(limit)
    )


async def list_exemptions() -> list[dict[str, Any]]:
    return await TaxExemption.select(
        TaxExemption.all_columns(),
        TaxExemption.organization.name.as_alias("organization_name"),
    ).order_by(TaxExemption.id, ascending=False)


def provider_from(settings: ProviderSettings, rules: RulesProvider) -> TaxProvider:
    if settings.provider == "http" and settings.base_url:
        return HttpTaxProvider(
            base_url=settings.base_url,
            timeout=settings.timeout_ms / 1000,
            company_code=settings.company_code,
            breaker=breaker_for(settings.base_url),
        )
    return rules


async def provider_status() -> dict[str, Any]:
    settings = await load_settings()
    breaker = breaker_for(settings.base_url) if settings.provider == "http" else None
    return {
        "settings": settings,
        "breaker": breaker.state if breaker else "n/a",
        "failures": breaker.failures if breaker else 0,
    }


# --- Computing tax for drafts ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DraftTax:
    invoice_id: int
    subtotal_minor: int
    line_ids: tuple[int, ...]
    result: TaxResult
    # amount_minor, tax_minor, tax_code, revenue_account of each line after the tax:
    # what the invoice's journal entry needs, without reading the lines again.
    lines: tuple[dict[str, Any], ...] = ()


async def _heads(invoice_ids: Sequence[int], pending_only: bool) -> list[dict[str, Any]]:
    where = among(Invoice.id, invoice_ids) & (Invoice.status == "draft")
    if pending_only:
        where &= Invoice.tax_status == "pending"
    return await Invoice.select(
        Invoice.id,
        Invoice.currency,
        Invoice.subtotal_minor,
        Invoice.issuing_entity.country.as_alias("seller_country"),
        Invoice.billing_account.code.as_alias("account_code"),
        Invoice.billing_account.organization.id.as_alias("org_id"),
        Invoice.billing_account.organization.country.as_alias("buyer_country"),
        Invoice.billing_account.organization.region.as_alias("buyer_region"),
        Invoice.billing_account.organization.tax_id.as_alias("buyer_vat"),
    ).where(where)


async def _requests(
    invoice_ids: Sequence[int], issue_date: date, pending_only: bool = False
) -> tuple[dict[int, TaxRequest], dict[int, tuple[int, list[dict[str, Any]]]]]:
    """Tax requests for the given drafts, in three queries."""
    if not invoice_ids:
        return {}, {}
    heads = await _heads(invoice_ids, pending_only)
    if not heads:
        return {}, {}
    lines = await InvoiceLine.select(
        InvoiceLine.id,
        InvoiceLine.invoice,
        InvoiceLine.amount_minor,
        InvoiceLine.tax_code,
        InvoiceLine.revenue_account,
    ).where(among(InvoiceLine.invoice, [int(h["id"]) for h in heads]))
    lines.sort(key=lambda r: (r["invoice"], r["id"]))
    by_invoice: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        by_invoice.setdefault(int(line["invoice"]), []).append(line)
    org_ids = sorted({int(h["org_id"]) for h in heads})
    exemptions: dict[int, str] = {}
    for row in await TaxExemption.select(
        TaxExemption.organization, TaxExemption.certificate_ref, TaxExemption.valid_until
    ).where(among(TaxExemption.organization, org_ids)):
        if row["valid_until"] is None or row["valid_until"] >= issue_date:
            exemptions[int(row["organization"])] = row["certificate_ref"]
    requests: dict[int, TaxRequest] = {}
    meta: dict[int, tuple[int, list[dict[str, Any]]]] = {}
    contexts: dict[tuple[str, str, str, str, str], TaxContext] = {}
    for h in heads:
        own = by_invoice.get(int(h["id"]), [])
        key = (
            h["seller_country"] or "",
            h["buyer_country"] or "",
            h["buyer_vat"] or "",
            exemptions.get(int(h["org_id"]), ""),
            (h["buyer_region"] or "").upper(),
        )
        ctx = contexts.get(key)
        if ctx is None:  # one context (and one VAT-number check) per distinct customer
            ctx = contexts[key] = TaxContext(
                seller_country=key[0],
                buyer_country=key[1],
                buyer_vat_id=key[2],
                exemption_ref=key[3],
                buyer_region=key[4],
            )
        requests[int(h["id"])] = TaxRequest(
            reference=str(h["id"]),
            currency=h["currency"],
            issue_date=issue_date,
            context=ctx,
            lines=tuple(TaxLineIn(line["amount_minor"], line["tax_code"]) for line in own),
            customer_code=h["account_code"],
        )
        meta[int(h["id"])] = (int(h["subtotal_minor"]), own)
    return requests, meta


def _draft_tax(
    invoice_id: int, meta: tuple[int, list[dict[str, Any]]], result: TaxResult
) -> DraftTax:
    subtotal, own = meta
    return DraftTax(
        invoice_id,
        subtotal,
        tuple(int(x["id"]) for x in own),
        result,
        tuple(
            {
                "amount_minor": x["amount_minor"],
                "tax_minor": out.tax_minor,
                "tax_code": out.tax_code,
                "revenue_account": x["revenue_account"],
            }
            for x, out in zip(own, result.lines, strict=True)
        ),
    )


async def compute_drafts(
    invoice_ids: Sequence[int], issue_date: date | None = None, pending_only: bool = False
) -> tuple[dict[int, DraftTax], dict[int, str]]:
    """Compute (not store) the tax of drafts: ``({id: DraftTax}, {id: failure reason})``;
    with ``pending_only`` only drafts whose tax is still pending.

    Runs outside any transaction (the HTTP provider must not be called while rows are
    locked). A failed or slow HTTP provider falls back to the rules, flagged estimated.
    """
    day = issue_date or datetime.now(UTC).date()
    requests, meta = await _requests(invoice_ids, day, pending_only)
    out: dict[int, DraftTax] = {}
    failed: dict[int, str] = {}
    if not requests:
        return out, failed
    rates = await rate_table()
    rules = RulesProvider(rates)
    provider = provider_from(await load_settings(), rules)
    if provider is rules:  # pure computation: no awaiting per invoice
        for invoice_id, request in requests.items():
            try:
                result = compute(request.context, request.lines, request.currency, rates)
            except MissingRateError as exc:
                failed[invoice_id] = f"tax could not be computed: {exc}"
                continue
            out[invoice_id] = _draft_tax(invoice_id, meta[invoice_id], result)
        return out, failed

    gate = asyncio.Semaphore(HTTP_CONCURRENCY)  # HTTP calls run a few at a time

    async def one(invoice_id: int, request: TaxRequest) -> None:
        async with gate:
            try:
                result = await calculate_with_fallback(provider, rules, request)
            except (MissingRateError, TaxProviderError) as exc:
                failed[invoice_id] = f"tax could not be computed: {exc}"
                return
        out[invoice_id] = _draft_tax(invoice_id, meta[invoice_id], result)

    await asyncio.gather(*(one(i, r) for i, r in requests.items()))
    return out, failed


async def apply_draft_taxes(taxes: Sequence[DraftTax], invoices: bool = True) -> None:
    """Store computed tax on lines and (unless the caller writes them itself) on the
    invoices' totals, inside the caller's transaction."""
    line_rows: list[dict[str, Any]] = []
    invoice_rows: list[dict[str, Any]] = []
    for t in taxes:
        for line_id, out in zip(t.line_ids, t.result.lines, strict=True):
            line_rows.append(
                {
                    "id": line_id,
                    "tax_rate": out.rate,
                    "tax_minor": out.tax_minor,
                    "tax_code": out.tax_code,
                }
            )
        total = t.subtotal_minor + t.result.tax_minor
        invoice_rows.append(
            {
                "id": t.invoice_id,
                "tax_minor": t.result.tax_minor,
                "total_minor": total,
                "balance_minor": total,
                "tax_status": t.result.status,
                "tax_note": t.result.note[:200],
            }
        )
    await update_rows(
        InvoiceLine,
        {"id": "bigint", "tax_rate": "numeric", "tax_minor": "bigint", "tax_code": "text"},
        line_rows,
    )
    if not invoices:
        return
    await update_rows(
        Invoice,
        {
            "id": "bigint",
            "tax_minor": "bigint",
            "total_minor": "bigint",
            "balance_minor": "bigint",
            "tax_status": "text",
            "tax_note": "text",
        },
        invoice_rows,
    )


async def recompute_tax(invoice_id: int, actor: Actor) -> TaxResult:
    """Staff: compute a draft's tax again (e.g. after the provider came back)."""
    computed, failed = await compute_drafts([invoice_id])
    if invoice_id in failed:
        raise Conflict(failed[invoice_id])
    if invoice_id not in computed:
        if not await Invoice.exists().where(Invoice.id == invoice_id):
            raise NotFound("invoice")
        raise Conflict("only a draft's tax can be recomputed")
    tax = computed[invoice_id]
    async with transaction():
        row = await for_update(
            Invoice.select(Invoice.status, Invoice.subtotal_minor, Invoice.tax_minor).where(
                Invoice.id == invoice_id
            )
        ).first()
        if row is None or row["status"] != "draft":
            raise Conflict("only a draft's tax can be recomputed")
        if row["subtotal_minor"] != tax.subtotal_minor:
            raise Conflict("the draft changed while its tax was computed; try again")
        await apply_draft_taxes([tax])
        await record(
            AuditRecord(
                actor,
                "invoice.tax_computed",
                "invoice",
                invoice_id,
                data={
                    "status": tax.result.status,
                    "tax": tax.result.tax_minor,
                    "previous_tax": row["tax_minor"],
                    "provider": tax.result.provider,
                },
            )
        )
    return tax.result
