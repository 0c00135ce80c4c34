"""Staff collections pages (``/staff/collections…``): overdue invoices with their dunning
state, promises to pay and pauses; chargebacks with the evidence checklist; the Stripe
reconciliation differences.

Every staff role may look (auditors read-only); collections staff and finance admins
act; running the reconciliation and resolving its differences is for finance admins.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import stripe
from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from core.collections import chargebacks, dunning, reconciliation
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.roles import StaffRole
from core.identity.security import staff_role
from portal.auth import actor_for, current_session, requires_staff

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

COLLECTORS = {StaffRole.COLLECTIONS.value, StaffRole.FINANCE_ADMIN.value}
RECONCILERS = {StaffRole.FINANCE_ADMIN.value}
NOTICES = {
    "promise": "Promise to pay recorded: reminders wait until the promised date.",
    "promise_cancelled": "Promise cancelled: reminders follow the schedule again.",
    "paused": "Reminders paused.",
    "resumed": "Reminders resumed.",
    "schedule": "Schedule saved. It applies from the next daily run.",
    "evidence_saved": "Evidence saved at Stripe (not submitted yet).",
    "evidence_submitted": "Evidence submitted to Stripe for review.",
    "reconciled": "Reconciliation finished.",
    "resolved": "Difference marked as resolved.",
}


def _clip(data: dict[str, Any], name: str, limit: int = 2000) -> str:
    value = data.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _today() -> Any:
    return datetime.now(UTC).date()


async def _role(request: Request[Any, Any, Any]) -> str:
    session = await current_session(request)
    assert session is not None  # requires_staff
    return await staff_role(session.user_id)


async def _require(request: Request[Any, Any, Any], allowed: set[str]) -> None:
    if await _role(request) not in allowed:
        raise PermissionDeniedException("Your staff role cannot do this.")


class CollectionsController(Controller):
    path = "/staff/collections"
    guards = [requires_staff]

    async def _render(
        self,
        request: Request[Any, Any, Any],
        template: str,
        *,
        status_code: int = 200,
        **context: Any,
    ) -> Template:
        role = await _role(request)
        notice = request.query_params.get("notice") or ""
        return Template(
            template,
            context={
                "user": await current_session(request),
                "nav": "staff",
                "may_act": role in COLLECTORS,
                "may_reconcile": role in RECONCILERS,
                "notice": NOTICES.get(notice, ""),
                "errors": {},
                "error": "",
                "today": _today(),
                **context,
            },
            status_code=status_code,
            media_type=MediaType.HTML,
        )

    # ------------------------------------------------------------------ dunning

    async def _overview(self, request: Request[Any, Any, Any], **extra: Any) -> Template:
        default, _ = await dunning.schedules()
        return await self._render(
            request,
            "collections/overview.html",
            rows=await dunning.overdue_overview(_today()),
            default_schedule=dunning.format_offsets(default),
            schedule_form=extra.pop("schedule_form", None),
            **extra,
        )

    @get("/", name="staff_collections")
    async def overview(self, request: Request[Any, Any, Any]) -> Template:
        return await self._overview(request)

    @post("/schedule", status_code=303)
    async def default_schedule(self, request: Request[Any, Any, Any], data: Form) -> Any:
        await _require(request, COLLECTORS)
        text = _clip(data, "offsets", 200)
        try:
            await dunning.set_schedule(None, text, actor_for(request))
        except ValidationFailed as exc:
            return await self._overview(
                request, status_code=422, errors=exc.errors, schedule_form={"offsets": text}
            )
        return Redirect("/staff/collections?notice=schedule", status_code=303)

    async def _invoice_page(
        self, request: Request[Any, Any, Any], invoice_id: int, **extra: Any
    ) -> Template:
        try:
            inv = await dunning.invoice_dunning(invoice_id, _today())
        except NotFound as exc:
            raise NotFoundException() from exc
        return await self._render(
            request,
            "collections/invoice.html",
            inv=inv,
            form=extra.pop("form", {}),
            schedule_form=extra.pop("schedule_form", None),
            **extra,
        )

    @get("/invoices/{invoice_id:int}", name="staff_collections_invoice")
    async def invoice(self, request: Request[Any, Any, Any], invoice_id: FromPath[int]) -> Template:
        return await self._invoice_page(request, invoice_id)

    @post("/invoices/{invoice_id:int}/promise", status_code=303)
    async def promise(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], data: Form
    ) -> Any:
        await _require(request, COLLECTORS)
        form = {
            "promised_date": _clip(data, "promised_date", 40),
            "amount": _clip(data, "amount", 40),
            "note": _clip(data, "note", 4000),
        }
        try:
            await dunning.record_promise(
                invoice_id,
                promised_date_text=form["promised_date"],
                amount_text=form["amount"],
                note=form["note"],
                actor=actor_for(request),
                today=_today(),
            )
        except NotFound as exc:
            raise NotFoundException() from exc
        except ValidationFailed as exc:
            return await self._invoice_page(
                request, invoice_id, status_code=422, errors=exc.errors, form=form
            )
        return Redirect(f"/staff/collections/invoices/{invoice_id}?notice=promise", status_code=303)

    @post("/invoices/{invoice_id:int}/pause", status_code=303)
    async def pause(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], data: Form
    ) -> Any:
        await _require(request, COLLECTORS)
        try:
            inv = await dunning.invoice_dunning(invoice_id, _today())
        except NotFound as exc:
            raise NotFoundException() from exc
        whole_account = _clip(data, "scope", 16) == "account"
        reason = "dispute" if _clip(data, "reason", 16) == "dispute" else "manual"
        await dunning.pause(
            int(inv["billing_account"]),
            reason=reason,
            invoice_id=None if whole_account else invoice_id,
            note=_clip(data, "note"),
            actor=actor_for(request),
        )
        return Redirect(f"/staff/collections/invoices/{invoice_id}?notice=paused", status_code=303)

    @post("/invoices/{invoice_id:int}/pauses/{pause_id:int}/resume", status_code=303)
    async def resume(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], pause_id: FromPath[int]
    ) -> Any:
        await _require(request, COLLECTORS)
        try:
            await dunning.resume(pause_id, actor_for(request))
        except NotFound as exc:
            raise NotFoundException() from exc
        except Conflict as exc:
            return await self._invoice_page(request, invoice_id, status_code=409, error=str(exc))
        return Redirect(f"/staff/collections/invoices/{invoice_id}?notice=resumed", status_code=303)

    @post("/invoices/{invoice_id:int}/promises/{promise_id:int}/cancel", status_code=303)
    async def cancel_promise(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], promise_id: FromPath[int]
    ) -> Any:
        await _require(request, COLLECTORS)
        try:
            await dunning.cancel_promise(promise_id, actor_for(request))
        except NotFound as exc:
            raise NotFoundException() from exc
        return Redirect(
            f"/staff/collections/invoices/{invoice_id}?notice=promise_cancelled", status_code=303
        )

    @post("/invoices/{invoice_id:int}/schedule", status_code=303)
    async def account_schedule(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], data: Form
    ) -> Any:
        await _require(request, COLLECTORS)
        try:
            inv = await dunning.invoice_dunning(invoice_id, _today())
        except NotFound as exc:
            raise NotFoundException() from exc
        text = _clip(data, "offsets", 200)
        try:
            await dunning.set_schedule(int(inv["billing_account"]), text, actor_for(request))
        except ValidationFailed as exc:
            return await self._invoice_page(
                request,
                invoice_id,
                status_code=422,
                errors=exc.errors,
                schedule_form={"offsets": text},
            )
        return Redirect(
            f"/staff/collections/invoices/{invoice_id}?notice=schedule", status_code=303
        )

    # -------------------------------------------------------------- chargebacks

    @get("/chargebacks", name="staff_chargebacks")
    async def chargeback_list(self, request: Request[Any, Any, Any]) -> Template:
        status = request.query_params.get("status") or ""
        return await self._render(
            request,
            "collections/chargebacks.html",
            rows=await chargebacks.list_chargebacks(status or None),
            status=status if status in ("open", "won", "lost") else "",
        )

    async def _chargeback_page(
        self, request: Request[Any, Any, Any], chargeback_id: int, **extra: Any
    ) -> Template:
        try:
            cb = await chargebacks.chargeback_detail(chargeback_id)
        except NotFound as exc:
            raise NotFoundException() from exc
        form = extra.pop("form", None) or {
            row["item"].field: row["value"] for row in cb["checklist"]
        }
        return await self._render(request, "collections/chargeback.html", cb=cb, form=form, **extra)

    @get("/chargebacks/{chargeback_id:int}", name="staff_chargeback")
    async def chargeback(
        self, request: Request[Any, Any, Any], chargeback_id: FromPath[int]
    ) -> Template:
        return await self._chargeback_page(request, chargeback_id)

    @post("/chargebacks/{chargeback_id:int}/evidence", status_code=303)
    async def evidence(
        self, request: Request[Any, Any, Any], chargeback_id: FromPath[int], data: Form
    ) -> Any:
        await _require(request, COLLECTORS)
        form = {
            item.field: _clip(data, item.field, chargebacks.MAX_TEXT + 1)
            for item in chargebacks.EVIDENCE_CHECKLIST
        }
        submit = _clip(data, "action", 16) == "submit"
        try:
            await chargebacks.submit_evidence(
                chargeback_id, form, submit=submit, actor=actor_for(request)
            )
        except NotFound as exc:
            raise NotFoundException() from exc
        except ValidationFailed as exc:
            return await self._chargeback_page(
                request, chargeback_id, status_code=422, errors=exc.errors, form=form
            )
        except Conflict as exc:
            return await self._chargeback_page(
                request, chargeback_id, status_code=409, error=str(exc), form=form
            )
        notice = "evidence_submitted" if submit else "evidence_saved"
        return Redirect(
            f"/staff/collections/chargebacks/{chargeback_id}?notice={notice}", status_code=303
        )

    # ----------------------------------------------------------- reconciliation

    async def _reconciliation(self, request: Request[Any, Any, Any], **extra: Any) -> Template:
        status = request.query_params.get("status") or "open"
        status = status if status in ("open", "resolved") else "open"
        return await self._render(
            request,
            "collections/reconciliation.html",
            rows=await reconciliation.differences(status),
            runs=await reconciliation.recent_runs(),
            status=status,
            **extra,
        )

    @get("/reconciliation", name="staff_reconciliation")
    async def reconciliation_page(self, request: Request[Any, Any, Any]) -> Template:
        return await self._reconciliation(request)

    @post("/reconciliation/run", status_code=303)
    async def run_reconciliation(self, request: Request[Any, Any, Any]) -> Any:
        await _require(request, RECONCILERS)
        try:
            await reconciliation.reconcile(actor=actor_for(request))
        except stripe.StripeError:
            return await self._reconciliation(
                request,
                status_code=503,
                error="Stripe did not answer: the run stopped before comparing. Try again later.",
            )
        return Redirect("/staff/collections/reconciliation?notice=reconciled", status_code=303)

    @post("/reconciliation/differences/{difference_id:int}/resolve", status_code=303)
    async def resolve(
        self, request: Request[Any, Any, Any], difference_id: FromPath[int], data: Form
    ) -> Any:
        await _require(request, RECONCILERS)
        try:
            await reconciliation.resolve_difference(
                difference_id, _clip(data, "note"), actor_for(request)
            )
        except NotFound as exc:
            raise NotFoundException() from exc
        except ValidationFailed as exc:
            return await self._reconciliation(
                request, status_code=422, errors=exc.errors, failed_id=difference_id
            )
        return Redirect("/staff/collections/reconciliation?notice=resolved", status_code=303)
