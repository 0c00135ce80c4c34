"""``/staff/remittance…``: importing bank statements, CSV column mappings and the cash
application workbench (suggested and unmatched lines; apply, split, unapply, mark as
unidentified, notes).

Finance admins, billing ops and collections act; auditors see the pages read-only;
support agents get a 403 (roles are checked again in ``core.remittance.services``).
Bad input re-renders the page with the field's message (422); a state clash shows the
page with the reason (409).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from core.cash.access import OPERATORS, READERS
from core.errors import Conflict, ValidationFailed
from core.remittance import services
from core.remittance.matching import RULE_LABELS
from core.remittance.parsers import CSV_FIELDS, FORMATS, SIGN_CONVENTIONS
from portal.auth import actor_for, current_session, requires_staff
from portal.staff.roles import requires_staff_role

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

STATUS_LABELS = {
    "open": "Needs work (suggested, unmatched, unidentified)",
    "suggested": "Suggested",
    "unmatched": "Unmatched",
    "unidentified": "Unidentified",
    "auto_applied": "Applied automatically",
    "applied": "Applied by staff",
    "unapplied": "Unapplied (cash on account)",
    "ignored": "Debits (ignored)",
    "all": "All lines",
}
NOTICES = {
    "applied": "Applied: the payment is recorded and the invoices updated.",
    "unapplied": "Unapplied: the invoices are open again; the money is unapplied cash.",
    "unidentified": "Marked as unidentified.",
    "noted": "Note added.",
    "mapping_saved": "CSV mapping saved.",
    "settings_saved": "Matching settings saved: they apply from the next import.",
}
FIELD_LABELS = {
    "value_date": "Value date",
    "amount": "Amount (signed)",
    "credit": "Credit (money in)",
    "debit": "Debit (money out)",
    "currency": "Currency",
    "reference": "Remittance text / reference",
    "payer_name": "Payer name",
    "payer_account": "Payer IBAN / account",
    "bank_reference": "Bank reference",
    "statement_id": "Statement id",
}
SPLIT_ROWS = 5


requires_remittance_reader = requires_staff_role(READERS, "Cash application is for finance staff.")


def _clip(data: dict[str, Any], name: str, limit: int = 200) -> str:
    value = data.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def _ctx(request: Request[Any, Any, Any], **extra: Any) -> dict[str, Any]:
    role = request.state.staff_role
    return {
        "user": await current_session(request),
        "nav": "staff",
        "role": role,
        "can_operate": role in OPERATORS,
        "notice": NOTICES.get(request.query_params.get("notice") or "", ""),
        "errors": {},
        "error": "",
        "form": {},
        "rule_labels": RULE_LABELS,
        "status_labels": STATUS_LABELS,
        **extra,
    }


def _page(template: str, context: dict[str, Any], status: int = 200) -> Template:
    return Template(template, context=context, status_code=status, media_type=MediaType.HTML)


class RemittanceController(Controller):
    path = "/staff/remittance"
    guards = [requires_staff, requires_remittance_reader]

    # ------------------------------------------------------------------ workbench list

    @get("/", name="remittance_workbench")
    async def workbench(
        self,
        request: HTMXRequest,
        status: FromQuery[str] = "open",
        q: FromQuery[str] = "",
        statement: FromQuery[str] = "",
    ) -> Template:
        status = status if status in STATUS_LABELS else "open"
        q = q.strip()[:100]
        statement_id = int(statement) if statement.isdigit() and len(statement) < 10 else None
        items = await services.work_items(status, q, statement_id)
        fragment = bool(request.htmx) and request.htmx.target == "line-results"
        context = await _ctx(
            request,
            sub="workbench",
            items=items,
            f={"status": status, "q": q, "statement": statement_id or ""},
            fragment=fragment,
        )
        if not fragment:
            context["statements"] = await services.statements(10)
        template = "remittance/_lines.html" if fragment else "remittance/workbench.html"
        return Template(
            template,
            context=context,
            headers={"Vary": "HX-Request, HX-Target"},
            media_type=MediaType.HTML,
        )

    # ------------------------------------------------------------------ import

    async def _import_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(
            request,
            sub="import",
            formats=FORMATS,
            mappings=await services.list_mappings(),
            statements=await services.statements(20),
            **kw,
        )
        return _page("remittance/import.html", context, status)

    @get("/import", name="remittance_import")
    async def import_page(self, request: Request[Any, Any, Any]) -> Template:
        return await self._import_page(request)

    @post("/import", status_code=200)
    async def import_file(self, request: Request[Any, Any, Any]) -> Template:
        form = await request.form()
        fmt = str(form.get("format") or "")
        mapping_raw = str(form.get("mapping") or "")
        chosen = {"format": fmt, "mapping": mapping_raw}
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await self._import_page(
                request, 422, errors={"file": "Choose a statement file."}, form=chosen
            )
        content = await upload.read()
        mapping_id = int(mapping_raw) if mapping_raw.isdigit() and len(mapping_raw) < 10 else None
        try:
            result = await services.import_statement(
                fmt=fmt,
                data=content,
                actor=actor_for(request),
                filename=str(upload.filename)[:200],
                mapping_id=mapping_id,
            )
        except ValidationFailed as exc:
            return await self._import_page(request, 422, errors=exc.errors, form=chosen)
        return await self._import_page(request, result=result, form=chosen)

    # ------------------------------------------------------------------ CSV mappings

    async def _mappings_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(
            request,
            sub="mappings",
            mappings=await services.list_mappings(),
            fields=CSV_FIELDS,
            field_labels=FIELD_LABELS,
            sign_conventions=SIGN_CONVENTIONS,
            **kw,
        )
        return _page("remittance/mappings.html", context, status)

    @get("/mappings", name="remittance_mappings")
    async def mappings(self, request: Request[Any, Any, Any]) -> Template:
        return await self._mappings_page(request)

    @post("/mappings", status_code=303)
    async def save_mapping(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: _clip(data, k, 80) for k in data}
        try:
            await services.save_mapping(
                name=form.get("name", ""),
                columns={f: form.get(f"col-{f}", "") for f in CSV_FIELDS},
                delimiter=form.get("delimiter", ",")[:1] or ",",
                has_header=form.get("has_header") == "true",
                date_format=form.get("date_format", ""),
                decimal_separator=form.get("decimal_separator", ".")[:1],
                sign_convention=form.get("sign_convention", ""),
                default_currency=form.get("default_currency", ""),
                actor=actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._mappings_page(request, 422, errors=exc.errors, form=form)
        return Redirect("/staff/remittance/mappings?notice=mapping_saved", status_code=303)

    # ------------------------------------------------------------------ matching settings

    async def _settings_page(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        config = await services.load_config()
        context = await _ctx(
            request,
            sub="settings",
            current=services.config_as_dict(config),
            can_configure=request.state.staff_role == "finance_admin",
            **kw,
        )
        return _page("remittance/settings.html", context, status)

    @get("/settings", name="remittance_settings")
    async def settings(self, request: Request[Any, Any, Any]) -> Template:
        return await self._settings_page(request)

    @post("/settings", status_code=303)
    async def save_settings(self, request: Request[Any, Any, Any], data: Form) -> Any:
        text = _clip(data, "config", 5000)
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError
        except ValueError:
            return await self._settings_page(
                request, 422, errors={"config": "Enter a JSON object."}, form={"config": text}
            )
        try:
            await services.save_config(raw, actor_for(request))
        except ValidationFailed as exc:
            return await self._settings_page(request, 422, errors=exc.errors, form={"config": text})
        return Redirect("/staff/remittance/settings?notice=settings_saved", status_code=303)

    # ------------------------------------------------------------------ one line

    async def _line_page(
        self, request: Request[Any, Any, Any], line_id: int, status: int = 200, **kw: Any
    ) -> Template:
        line = await services.line_detail(line_id)
        q = (request.query_params.get("q") or "").strip()[:100]
        results = await services.search_open_invoices(q, line["currency"]) if q else []
        rows = kw.pop("rows", None) or [
            {"invoice": s["number"], "amount": _major(s["amount_minor"], line["currency"])}
            for s in line["suggested_invoices"]
        ]
        rows = (rows + [{"invoice": "", "amount": ""}] * SPLIT_ROWS)[:SPLIT_ROWS]
        context = await _ctx(
            request,
            sub="workbench",
            line=line,
            q=q,
            results=results,
            rows=rows,
            applicable=line["status"] in services.OPEN_STATUSES,
            **kw,
        )
        return _page("remittance/line.html", context, status)

    @get("/lines/{line_id:int}", name="remittance_line")
    async def line(self, request: HTMXRequest, line_id: FromPath[int]) -> Template:
        if request.htmx and request.htmx.target == "search-results":
            line = await services.line_detail(line_id)
            q = (request.query_params.get("q") or "").strip()[:100]
            results = await services.search_open_invoices(q, line["currency"]) if q else []
            context = await _ctx(request, line=line, q=q, results=results)
            return _page("remittance/_search_results.html", context)
        return await self._line_page(request, line_id)

    @post("/lines/{line_id:int}/accept", status_code=303)
    async def accept(self, request: Request[Any, Any, Any], line_id: FromPath[int]) -> Any:
        try:
            await services.accept_suggestion(line_id, actor_for(request))
        except ValidationFailed as exc:
            return await self._line_page(request, line_id, 422, errors=exc.errors)
        except Conflict as exc:
            return await self._line_page(request, line_id, 409, error=str(exc))
        return Redirect(f"/staff/remittance/lines/{line_id}?notice=applied", status_code=303)

    @post("/lines/{line_id:int}/apply", status_code=303)
    async def apply(
        self, request: Request[Any, Any, Any], line_id: FromPath[int], data: Form
    ) -> Any:
        rows = [
            {"invoice": _clip(data, f"invoice-{n}", 40), "amount": _clip(data, f"amount-{n}", 40)}
            for n in range(1, SPLIT_ROWS + 1)
        ]
        note = _clip(data, "note", services.NOTE_MAX)
        try:
            line = await services.line_detail(line_id)
            items = await services.items_by_number(
                [r["invoice"] for r in rows], [r["amount"] for r in rows], line["currency"]
            )
            await services.apply_line(line_id, items, actor_for(request), note)
        except ValidationFailed as exc:
            return await self._line_page(request, line_id, 422, errors=exc.errors, rows=rows)
        except Conflict as exc:
            return await self._line_page(request, line_id, 409, error=str(exc), rows=rows)
        return Redirect(f"/staff/remittance/lines/{line_id}?notice=applied", status_code=303)

    @post("/lines/{line_id:int}/unapply", status_code=303)
    async def unapply(
        self, request: Request[Any, Any, Any], line_id: FromPath[int], data: Form
    ) -> Any:
        try:
            await services.unapply_line(line_id, actor_for(request), _clip(data, "reason", 500))
        except ValidationFailed as exc:
            return await self._line_page(request, line_id, 422, errors=exc.errors)
        except Conflict as exc:
            return await self._line_page(request, line_id, 409, error=str(exc))
        return Redirect(f"/staff/remittance/lines/{line_id}?notice=unapplied", status_code=303)

    @post("/lines/{line_id:int}/unidentified", status_code=303)
    async def unidentified(
        self, request: Request[Any, Any, Any], line_id: FromPath[int], data: Form
    ) -> Any:
        try:
            await services.mark_unidentified(
                line_id, actor_for(request), _clip(data, "unidentified_note", 1000)
            )
        except ValidationFailed as exc:
            errors = {"unidentified_note": exc.errors.get("note", str(exc))}
            return await self._line_page(request, line_id, 422, errors=errors)
        except Conflict as exc:
            return await self._line_page(request, line_id, 409, error=str(exc))
        return Redirect(f"/staff/remittance/lines/{line_id}?notice=unidentified", status_code=303)

    @post("/lines/{line_id:int}/note", status_code=303)
    async def note(
        self, request: Request[Any, Any, Any], line_id: FromPath[int], data: Form
    ) -> Any:
        try:
            await services.add_note(line_id, actor_for(request), _clip(data, "note", 1000))
        except ValidationFailed as exc:
            return await self._line_page(request, line_id, 422, errors=exc.errors)
        return Redirect(f"/staff/remittance/lines/{line_id}?notice=noted", status_code=303)


def _major(minor: int, currency_code: str) -> str:
    from core.money import Money

    return str(Money.from_minor(minor, currency_code).amount)
