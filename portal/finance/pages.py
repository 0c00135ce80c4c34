"""``/staff/finance…``: drafts to review (approve, recompute tax, finalize), exchange
rates (manual entry, ECB file import), tax settings, period locks, and the approval /
numbering policy of each issuing entity.

Finance admins do everything; billing ops review drafts (approve, recompute tax,
finalize); auditors see every page read-only; other staff get a 403. Handlers parse
the form and call one core service; bad input re-renders the page with the field's
message (422); a state clash shows the reason (409).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from core.errors import Conflict, NotFound, ValidationFailed
from core.fx.services import add_manual_rate, import_ecb, list_rates
from core.identity.security import staff_role
from core.identity.tables import BillingAccount, IssuingEntity
from core.invoicing import review
from core.invoicing.finalization import finalize_many
from core.invoicing.services import approve_draft, set_account_approval, set_invoicing_policy
from core.invoicing.tables import AccountApprovalRule, InvoicingPolicy
from core.ledger import export as gl_export
from core.ledger.periods import list_locks, lock_period, unlock_period
from core.money import AmountParseError, parse_amount
from core.tax import services as tax_services
from core.tax.rules import DEFAULT_RATES
from core.tax.tables import TaxRate
from portal.auth import actor_for, current_session, requires_staff

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

READERS = frozenset({"finance_admin", "billing_ops", "auditor"})
REVIEWERS = frozenset({"finance_admin", "billing_ops"})
ADMINS = frozenset({"finance_admin"})

NOTICES = {
    "approved": "Draft approved.",
    "finalized": "Finalized: numbered, exchange rate frozen, entry posted.",
    "tax_recomputed": "Tax recomputed.",
    "rate_saved": "Exchange rate saved.",
    "settings_saved": "Tax provider settings saved.",
    "tax_rate_saved": "Tax rate saved.",
    "exemption_saved": "Exemption recorded: the customer's next drafts are not taxed.",
    "region_saved": "Tax region saved: the customer's next drafts are taxed at its rate.",
    "locked": "Period locked.",
    "unlocked": "Period unlocked.",
    "policy_saved": "Policy saved.",
    "account_saved": "Billing account approval rule saved.",
}


async def requires_finance_reader(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    session = await current_session(connection)
    assert session is not None  # requires_staff runs first
    role = await staff_role(session.user_id)
    if role not in READERS:
        raise PermissionDeniedException("The finance pages are for finance staff.")
    connection.state.finance_role = role


def _need(request: Request[Any, Any, Any], allowed: frozenset[str]) -> None:
    if request.state.finance_role not in allowed:
        if request.state.finance_role == "auditor":
            raise PermissionDeniedException("Auditors have read-only access.")
        raise PermissionDeniedException("Only a finance admin can do this.")


def _clip(data: dict[str, Any], name: str, limit: int = 500) -> str:
    value = data.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def _ctx(request: Request[Any, Any, Any], sub: str, **extra: Any) -> dict[str, Any]:
    session = await current_session(request)
    role = request.state.finance_role
    return {
        "user": session,
        "nav": "staff",
        "sub": sub,
        "role": role,
        "can_review": role in REVIEWERS,
        "can_admin": role in ADMINS,
        "me": f"staff:{session.user_id}" if session else "",
        "notice": NOTICES.get(request.query_params.get("notice") or "", ""),
        "errors": {},
        "error": "",
        "form": {},
        **extra,
    }


def _page(template: str, context: dict[str, Any], status: int = 200) -> Template:
    return Template(template, context=context, status_code=status, media_type=MediaType.HTML)


def _date(text: str, field: str) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError as exc:
        raise ValidationFailed({field: "Enter a date as YYYY-MM-DD."}) from exc


def _entity_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value < 2**31:
        raise ValidationFailed({"entity": "Choose an issuing entity."})
    return value


async def _entities() -> list[dict[str, Any]]:
    return await IssuingEntity.select(
        IssuingEntity.id, IssuingEntity.code, IssuingEntity.name, IssuingEntity.functional_currency
    ).order_by(IssuingEntity.code)


class FinanceController(Controller):
    path = "/staff/finance"
    guards = [requires_staff, requires_finance_reader]

    @get("/", name="staff_finance")
    async def home(self) -> Redirect:
        return Redirect("/staff/finance/drafts", status_code=303)

    # ------------------------------------------------------------------ drafts

    @get("/drafts", name="staff_finance_drafts")
    async def drafts(
        self,
        request: Request[Any, Any, Any],
        entity: FromQuery[str] = "",
        approval: FromQuery[str] = "",
        tax: FromQuery[str] = "",
        q: FromQuery[str] = "",
    ) -> Template:
        filters = {
            "entity": entity[:16],
            "approval": approval if approval in review.APPROVAL_FILTERS else "",
            "tax": tax if tax in review.TAX_FILTERS else "",
            "q": q[:64],
        }
        rows, total = await review.list_drafts(**filters)
        context = await _ctx(
            request,
            "drafts",
            drafts=rows,
            total=total,
            filters=filters,
            entities=await _entities(),
            approval_filters=review.APPROVAL_FILTERS,
            tax_filters=review.TAX_FILTERS,
        )
        if request.headers.get("hx-request") == "true":
            return _page("finance/_drafts_table.html", context)
        return _page("finance/drafts.html", context)

    async def _draft_page(
        self, request: Request[Any, Any, Any], invoice_id: int, status: int = 200, **kw: Any
    ) -> Template:
        inv = await review.get_invoice_for_review(invoice_id)
        return _page("finance/draft.html", await _ctx(request, "drafts", inv=inv, **kw), status)

    @get("/drafts/{invoice_id:int}", name="staff_finance_draft")
    async def draft(self, request: Request[Any, Any, Any], invoice_id: FromPath[int]) -> Template:
        return await self._draft_page(request, invoice_id)

    @post("/drafts/{invoice_id:int}/approve", status_code=303)
    async def approve(self, request: Request[Any, Any, Any], invoice_id: FromPath[int]) -> Any:
        _need(request, REVIEWERS)
        await review.get_invoice_for_review(invoice_id)  # 404 first
        try:
            await approve_draft(invoice_id, actor_for(request))
        except Conflict as exc:
            return await self._draft_page(request, invoice_id, 409, error=str(exc))
        return Redirect(f"/staff/finance/drafts/{invoice_id}?notice=approved", status_code=303)

    @post("/drafts/{invoice_id:int}/recompute-tax", status_code=303)
    async def recompute(self, request: Request[Any, Any, Any], invoice_id: FromPath[int]) -> Any:
        _need(request, REVIEWERS)
        await review.get_invoice_for_review(invoice_id)
        try:
            await tax_services.recompute_tax(invoice_id, actor_for(request))
        except Conflict as exc:
            return await self._draft_page(request, invoice_id, 409, error=str(exc))
        return Redirect(
            f"/staff/finance/drafts/{invoice_id}?notice=tax_recomputed", status_code=303
        )

    @post("/drafts/{invoice_id:int}/finalize", status_code=303)
    async def finalize(self, request: Request[Any, Any, Any], invoice_id: FromPath[int]) -> Any:
        _need(request, REVIEWERS)
        await review.get_invoice_for_review(invoice_id)
        report = await finalize_many([invoice_id], actor_for(request))
        if invoice_id in report.held:
            return await self._draft_page(
                request, invoice_id, 409, error=f"Not finalized: {report.held[invoice_id]}."
            )
        return Redirect(f"/staff/finance/drafts/{invoice_id}?notice=finalized", status_code=303)

    # ------------------------------------------------------------------ exchange rates

    async def _rates_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(request, "rates", rates=await list_rates(200), **kw)
        return _page("finance/rates.html", context, status)

    @get("/rates", name="staff_finance_rates")
    async def rates(self, request: Request[Any, Any, Any]) -> Template:
        return await self._rates_page(request)

    @post("/rates", status_code=303)
    async def add_rate(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {k: _clip(data, k, 40) for k in ("base", "quote", "rate", "rate_date")}
        try:
            await add_manual_rate(
                form["base"],
                form["quote"],
                form["rate"],
                _date(form["rate_date"], "rate_date"),
                actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._rates_page(request, 422, errors=exc.errors, form=form)
        return Redirect("/staff/finance/rates?notice=rate_saved", status_code=303)

    @post("/rates/import", status_code=303)
    async def import_rates(self, request: Request[Any, Any, Any]) -> Any:
        _need(request, ADMINS)
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await self._rates_page(
                request, 422, import_errors={"file": "Choose an ECB XML file to import."}
            )
        content = await upload.read()
        try:
            result = await import_ecb(content, actor_for(request))
        except ValidationFailed as exc:
            return await self._rates_page(request, 422, import_errors=exc.errors)
        return await self._rates_page(
            request,
            notice_text=(
                f"Imported {result.inserted} rate(s) over {result.days} day(s); "
                f"{result.already_present} were already present."
            ),
        )

    # ------------------------------------------------------------------ tax

    async def _tax_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        overrides = await TaxRate.select().order_by(TaxRate.country, TaxRate.region)
        overridden = {(r["country"], r["region"], r["tax_code"]) for r in overrides}
        defaults = [
            {"country": c, "region": reg, "tax_code": code, "rate": rate}
            for (c, reg, code), rate in sorted(DEFAULT_RATES.items())
            if (c, reg, code) not in overridden
        ]
        context = await _ctx(
            request,
            "tax",
            status=await tax_services.provider_status(),
            overrides=overrides,
            defaults=defaults,
            exemptions=await tax_services.list_exemptions(),
            regions=await tax_services.organizations_with_region(),
            **kw,
        )
        return _page("finance/tax.html", context, status)

    @get("/tax", name="staff_finance_tax")
    async def tax(self, request: Request[Any, Any, Any]) -> Template:
        return await self._tax_page(request)

    @post("/tax/settings", status_code=303)
    async def tax_settings(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {
            k: _clip(data, k, 300) for k in ("provider", "base_url", "timeout_ms", "company_code")
        }
        try:
            await tax_services.save_settings(
                form["provider"],
                form["base_url"],
                form["timeout_ms"],
                form["company_code"],
                actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._tax_page(request, 422, errors=exc.errors, form=form)
        return Redirect("/staff/finance/tax?notice=settings_saved", status_code=303)

    @post("/tax/rates", status_code=303)
    async def tax_rate(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {
            k: _clip(data, k, 200) for k in ("country", "region", "tax_code", "rate", "description")
        }
        try:
            await tax_services.set_rate(
                form["country"],
                form["region"],
                form["tax_code"],
                form["rate"],
                form["description"],
                actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._tax_page(request, 422, rate_errors=exc.errors, rate_form=form)
        return Redirect("/staff/finance/tax?notice=tax_rate_saved", status_code=303)

    @post("/tax/exemptions", status_code=303)
    async def tax_exemption(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {k: _clip(data, k, 100) for k in ("account_code", "certificate_ref", "valid_until")}
        account = (
            await BillingAccount.select(BillingAccount.organization)
            .where(BillingAccount.code == form["account_code"])
            .first()
        )
        try:
            if account is None:
                raise ValidationFailed({"account_code": "No billing account has this code."})
            until = _date(form["valid_until"], "valid_until") if form["valid_until"] else None
            await tax_services.add_exemption(
                int(account["organization"]), form["certificate_ref"], until, actor_for(request)
            )
        except ValidationFailed as exc:
            return await self._tax_page(
                request, 422, exemption_errors=exc.errors, exemption_form=form
            )
        return Redirect("/staff/finance/tax?notice=exemption_saved", status_code=303)

    @post("/tax/regions", status_code=303)
    async def tax_region(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {k: _clip(data, k, 100) for k in ("region_account_code", "org_region")}
        try:
            await tax_services.set_organization_region(
                form["region_account_code"], form["org_region"], actor_for(request)
            )
        except ValidationFailed as exc:
            fields = {"account_code": "region_account_code", "region": "org_region"}
            errors = {fields.get(k, k): v for k, v in exc.errors.items()}
            return await self._tax_page(request, 422, region_errors=errors, region_form=form)
        return Redirect("/staff/finance/tax?notice=region_saved", status_code=303)

    # ------------------------------------------------------------------ period locks

    async def _periods_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(
            request, "periods", locks=await list_locks(), entities=await _entities(), **kw
        )
        return _page("finance/periods.html", context, status)

    @get("/periods", name="staff_finance_periods")
    async def periods(self, request: Request[Any, Any, Any]) -> Template:
        return await self._periods_page(request)

    @post("/periods", status_code=303)
    async def change_period(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {k: _clip(data, k) for k in ("entity", "period", "reason", "action")}
        try:
            entity_id = _entity_id(form["entity"])
            change = unlock_period if form["action"] == "unlock" else lock_period
            await change(entity_id, form["period"], form["reason"], actor_for(request))
        except ValidationFailed as exc:
            return await self._periods_page(request, 422, errors=exc.errors, form=form)
        except NotFound:
            return await self._periods_page(
                request, 422, errors={"entity": "Choose an issuing entity."}, form=form
            )
        except Conflict as exc:
            return await self._periods_page(request, 409, error=str(exc), form=form)
        notice = "unlocked" if form["action"] == "unlock" else "locked"
        return Redirect(f"/staff/finance/periods?notice={notice}", status_code=303)

    # ------------------------------------------------------------------ GL export

    async def _gl_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(request, "gl", entities=await _entities(), **kw)
        return _page("finance/gl.html", context, status)

    @get("/gl", name="staff_finance_gl")
    async def gl(self, request: Request[Any, Any, Any]) -> Template:
        return await self._gl_page(request)

    @get("/gl/export.csv", name="staff_finance_gl_export")
    async def gl_export(
        self,
        request: Request[Any, Any, Any],
        entity: FromQuery[str] = "",
        date_from: FromQuery[str] = "",
        date_to: FromQuery[str] = "",
    ) -> Any:
        form = {"entity": entity[:12], "date_from": date_from[:10], "date_to": date_to[:10]}
        errors: dict[str, str] = {}
        try:
            start = _date(form["date_from"], "date_from")
        except ValidationFailed as exc:
            errors |= exc.errors
        try:
            end = _date(form["date_to"], "date_to")
        except ValidationFailed as exc:
            errors |= exc.errors
        entity_id = None
        if form["entity"]:
            try:
                entity_id = _entity_id(form["entity"])
            except ValidationFailed as exc:
                errors |= exc.errors
        if not errors and not 0 <= (end - start).days <= gl_export.MAX_DAYS:
            errors["date_to"] = "The end must be on or after the start, at most a year later."
        if errors:
            return await self._gl_page(request, 422, errors=errors, form=form)
        body = gl_export.to_csv(await gl_export.gl_lines(start, end, entity_id))
        name = f"gl-{start.isoformat()}-{end.isoformat()}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # ------------------------------------------------------------------ policies

    async def _policies_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        entities = await _entities()
        policies = {int(p["issuing_entity"]): p for p in await InvoicingPolicy.select()}
        flagged = await AccountApprovalRule.select(
            AccountApprovalRule.all_columns(),
            AccountApprovalRule.billing_account.code.as_alias("account_code"),
        ).where(AccountApprovalRule.requires_approval.eq(True))
        for e in entities:
            e["policy"] = policies.get(int(e["id"]))
        context = await _ctx(request, "policies", entities=entities, flagged=flagged, **kw)
        return _page("finance/policies.html", context, status)

    @get("/policies", name="staff_finance_policies")
    async def policies(self, request: Request[Any, Any, Any]) -> Template:
        return await self._policies_page(request)

    @post("/policies", status_code=303)
    async def save_policy(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {k: _clip(data, k, 64) for k in ("entity", "threshold", "number_format")}
        try:
            entity = (
                await IssuingEntity.select(IssuingEntity.id, IssuingEntity.functional_currency)
                .where(IssuingEntity.id == _entity_id(form["entity"]))
                .first()
            )
            if entity is None:
                raise ValidationFailed({"entity": "Choose an issuing entity."})
            threshold = None
            if form["threshold"]:
                try:
                    threshold = parse_amount(
                        form["threshold"], entity["functional_currency"]
                    ).to_minor()
                except (AmountParseError, ValueError) as exc:
                    raise ValidationFailed(
                        {"threshold": "Enter an amount such as 5000.00, or leave it empty."}
                    ) from exc
            await set_invoicing_policy(
                int(entity["id"]), threshold, form["number_format"], actor_for(request)
            )
        except ValidationFailed as exc:
            return await self._policies_page(request, 422, errors=exc.errors, form=form)
        return Redirect("/staff/finance/policies?notice=policy_saved", status_code=303)

    @post("/policies/accounts", status_code=303)
    async def account_rule(self, request: Request[Any, Any, Any], data: Form) -> Any:
        _need(request, ADMINS)
        form = {k: _clip(data, k, 300) for k in ("account_code", "requires", "reason")}
        account = (
            await BillingAccount.select(BillingAccount.id)
            .where(BillingAccount.code == form["account_code"])
            .first()
        )
        if account is None:
            return await self._policies_page(
                request,
                422,
                account_errors={"account_code": "No billing account has this code."},
                account_form=form,
            )
        await set_account_approval(
            int(account["id"]), form["requires"] == "yes", form["reason"], actor_for(request)
        )
        return Redirect("/staff/finance/policies?notice=account_saved", status_code=303)
