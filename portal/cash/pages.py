"""``/staff/cash…``: write-off rules and approvals, unapplied cash (apply, unapply,
refund), settlements of invoices (early-payment discounts, accepted short payments)
and discount terms.

Finance admins, billing ops and collections use these pages (what each may do is
checked again in ``core.cash``); auditors see them read-only; support agents get a 403.
Handlers parse the form and call one service; bad input re-renders the page with the
field's message (422), a state clash shows the page with the reason (409).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template

from core.cash import adjustments, allocations, refunds, writeoffs
from core.cash.access import APPROVERS, OPERATORS, READERS, REFUND_REQUESTERS
from core.cash.tables import WriteOff
from core.errors import Conflict, NotFound, ValidationFailed
from core.identity.tables import BillingAccount
from core.invoicing.tables import Invoice
from core.money import AmountParseError, parse_amount
from core.payments.allocation import AllocationRequest
from core.payments.tables import Allocation
from portal.auth import actor_for, current_session, requires_staff
from portal.staff.roles import requires_staff_role

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

NOTICES = {
    "written_off": "Written off: the invoice is closed.",
    "pending_approval": "Over the write-off rule: the request waits for a finance admin.",
    "approved": "Approved and posted.",
    "rejected": "Rejected.",
    "not_needed": "Nothing left to write off: the request was closed.",
    "applied": "Cash applied.",
    "unapplied": "Allocation taken back: the amount is unapplied cash again.",
    "refund_requested": "Refund requested: a finance admin other than you approves it.",
    "refund_processing": "Approved and posted; the refund is on its way.",
    "refund_succeeded": "Refund completed.",
    "settled": "Settled: the credit line shows on the customer's invoice.",
    "rule_saved": "Write-off rule saved.",
    "terms_saved": "Discount terms saved.",
}


def _clip(data: dict[str, Any], name: str, limit: int = 500) -> str:
    value = data.get(name)
    return value[: limit * 4] if isinstance(value, str) else ""


requires_cash_reader = requires_staff_role(READERS, "The cash pages are for finance staff.")


async def _ctx(request: Request[Any, Any, Any], **extra: Any) -> dict[str, Any]:
    role = request.state.staff_role
    notice = request.query_params.get("notice") or ""
    return {
        "user": await current_session(request),
        "nav": "staff",
        "role": role,
        "can_operate": role in OPERATORS,
        "can_approve": role in APPROVERS,
        "can_refund": role in REFUND_REQUESTERS,
        "me": f"staff:{(await current_session(request)).user_id}",  # type: ignore[union-attr]
        "notice": NOTICES.get(notice, ""),
        "errors": {},
        "error": "",
        "form": {},
        **extra,
    }


def _page(template: str, context: dict[str, Any], status: int = 200) -> Template:
    return Template(template, context=context, status_code=status, media_type=MediaType.HTML)


class CashController(Controller):
    path = "/staff/cash"
    guards = [requires_staff, requires_cash_reader]

    # ------------------------------------------------------------------ approvals queue

    async def _home(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(
            request,
            sub="queue",
            pending=await writeoffs.pending_write_offs(),
            pending_refunds=await refunds.refunds("pending_approval"),
            processing_refunds=await refunds.refunds("processing"),
            recent=await writeoffs.recent_write_offs(20),
            **kw,
        )
        return _page("cash/home.html", context, status)

    @get("/", name="staff_cash")
    async def home(self, request: Request[Any, Any, Any]) -> Template:
        return await self._home(request)

    @post("/write-offs/{write_off_id:int}/approve", status_code=303)
    async def approve_write_off(
        self, request: Request[Any, Any, Any], write_off_id: FromPath[int], data: Form
    ) -> Any:
        try:
            result = await writeoffs.approve_write_off(
                write_off_id, actor_for(request), _clip(data, "note")
            )
        except Conflict as exc:
            return await self._home(request, status=409, error=str(exc))
        notice = "approved" if result.status == "written_off" else "not_needed"
        return Redirect(f"/staff/cash?notice={notice}", status_code=303)

    @post("/write-offs/{write_off_id:int}/reject", status_code=303)
    async def reject_write_off(
        self, request: Request[Any, Any, Any], write_off_id: FromPath[int], data: Form
    ) -> Any:
        try:
            await writeoffs.reject_write_off(write_off_id, actor_for(request), _clip(data, "note"))
        except ValidationFailed as exc:
            return await self._home(
                request, status=422, error=exc.errors.get("note", str(exc)), failed=write_off_id
            )
        except Conflict as exc:
            return await self._home(request, status=409, error=str(exc))
        return Redirect("/staff/cash?notice=rejected", status_code=303)

    @post("/refunds/{refund_id:int}/approve", status_code=303)
    async def approve_refund(
        self, request: Request[Any, Any, Any], refund_id: FromPath[int], data: Form
    ) -> Any:
        actor = actor_for(request)
        try:
            channel = await refunds.approve_refund(refund_id, actor, _clip(data, "note"))
        except Conflict as exc:
            return await self._home(request, status=409, error=str(exc))
        status = "processing"
        if channel == "stripe":
            status = await refunds.submit_stripe_refund(refund_id, actor)
        return Redirect(f"/staff/cash?notice=refund_{status}", status_code=303)

    @post("/refunds/{refund_id:int}/reject", status_code=303)
    async def reject_refund(
        self, request: Request[Any, Any, Any], refund_id: FromPath[int], data: Form
    ) -> Any:
        try:
            await refunds.reject_refund(refund_id, actor_for(request), _clip(data, "note"))
        except ValidationFailed as exc:
            return await self._home(
                request, status=422, error=exc.errors.get("note", str(exc)), failed_refund=refund_id
            )
        except Conflict as exc:
            return await self._home(request, status=409, error=str(exc))
        return Redirect("/staff/cash?notice=rejected", status_code=303)

    @post("/refunds/{refund_id:int}/complete", status_code=303)
    async def complete_refund(
        self, request: Request[Any, Any, Any], refund_id: FromPath[int]
    ) -> Any:
        actor = actor_for(request)
        try:
            rows = await refunds.get_refund(refund_id)
            if rows["channel"] == "stripe":
                status = await refunds.submit_stripe_refund(refund_id, actor)
            else:
                await refunds.mark_paid_out(refund_id, actor)
                status = "succeeded"
        except Conflict as exc:
            return await self._home(request, status=409, error=str(exc))
        return Redirect(f"/staff/cash?notice=refund_{status}", status_code=303)

    # ------------------------------------------------------------------ unapplied cash

    @get("/unapplied", name="staff_cash_unapplied")
    async def unapplied(self, request: Request[Any, Any, Any], q: FromQuery[str] = "") -> Template:
        q = q[:64]
        rows = await allocations.payments_with_unapplied(q)
        groups: dict[str, dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault(
                f"{r['account_code']}|{r['currency']}",
                {
                    "code": r["account_code"],
                    "name": r["account_name"],
                    "currency": r["currency"],
                    "total": 0,
                    "payments": [],
                },
            )
            g["total"] += r["unapplied_minor"]
            g["payments"].append(r)
        context = await _ctx(request, sub="unapplied", q=q, groups=list(groups.values()))
        return _page("cash/unapplied.html", context)

    async def _payment(
        self, request: Request[Any, Any, Any], payment_id: int, status: int = 200, **kw: Any
    ) -> Template:
        payment = await allocations.payment_detail(payment_id)
        context = await _ctx(
            request,
            sub="unapplied",
            p=payment,
            payment_refunds=await refunds.refunds(payment_id=payment_id),
            **kw,
        )
        return _page("cash/payment.html", context, status)

    @get("/payments/{payment_id:int}", name="staff_cash_payment")
    async def payment(self, request: Request[Any, Any, Any], payment_id: FromPath[int]) -> Template:
        return await self._payment(request, payment_id)

    @post("/payments/{payment_id:int}/apply", status_code=303)
    async def apply(
        self, request: Request[Any, Any, Any], payment_id: FromPath[int], data: Form
    ) -> Any:
        payment = await allocations.payment_detail(payment_id)
        items: list[AllocationRequest] = []
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        for inv in payment["open_invoices"]:
            name = f"amount-{inv['id']}"
            raw = _clip(data, name, 40).strip()
            form[name] = raw
            if not raw:
                continue
            try:
                minor = parse_amount(raw, payment["currency"]).to_minor()
            except AmountParseError as exc:
                errors[name] = str(exc)
                continue
            if minor:
                items.append(AllocationRequest(inv["id"], minor))
        if not errors:
            try:
                await allocations.apply_unapplied(payment_id, items, actor_for(request))
            except ValidationFailed as exc:
                errors = {"apply": " ".join(exc.errors.values())}
            except Conflict as exc:
                return await self._payment(request, payment_id, 409, error=str(exc), form=form)
        if errors:
            return await self._payment(request, payment_id, 422, errors=errors, form=form)
        return Redirect(f"/staff/cash/payments/{payment_id}?notice=applied", status_code=303)

    @post("/allocations/{allocation_id:int}/unapply", status_code=303)
    async def unapply(
        self, request: Request[Any, Any, Any], allocation_id: FromPath[int], data: Form
    ) -> Any:
        if not 0 < allocation_id <= allocations.MAX_ID:
            raise NotFound("allocation")
        row = await Allocation.select(Allocation.payment).where(Allocation.id == allocation_id)
        if not row:
            raise NotFound("allocation")
        payment_id = row[0]["payment"]
        try:
            await allocations.unapply(allocation_id, actor_for(request), _clip(data, "reason"))
        except ValidationFailed as exc:
            return await self._payment(
                request,
                payment_id,
                422,
                errors={f"reason-{allocation_id}": exc.errors.get("reason", str(exc))},
            )
        except Conflict as exc:
            return await self._payment(request, payment_id, 409, error=str(exc))
        return Redirect(f"/staff/cash/payments/{payment_id}?notice=unapplied", status_code=303)

    @post("/payments/{payment_id:int}/refunds", status_code=303)
    async def request_refund(
        self, request: Request[Any, Any, Any], payment_id: FromPath[int], data: Form
    ) -> Any:
        payment = await allocations.payment_detail(payment_id)
        form = {
            "refund_amount": _clip(data, "refund_amount", 40),
            "refund_reason": _clip(data, "refund_reason"),
        }
        try:
            try:
                amount = parse_amount(form["refund_amount"], payment["currency"]).to_minor()
            except AmountParseError as exc:
                raise ValidationFailed({"amount": str(exc)}) from exc
            await refunds.request_refund(
                payment_id, amount, form["refund_reason"], actor_for(request)
            )
        except ValidationFailed as exc:
            errors = {f"refund_{k}": v for k, v in exc.errors.items()}
            return await self._payment(request, payment_id, 422, errors=errors, form=form)
        return Redirect(
            f"/staff/cash/payments/{payment_id}?notice=refund_requested", status_code=303
        )

    # ------------------------------------------------------------------------ invoices

    @get("/invoices", name="staff_cash_invoices")
    async def find_invoice(
        self, request: Request[Any, Any, Any], number: FromQuery[str] = ""
    ) -> Any:
        number = number.strip()[:40]
        if number:
            row = (
                await Invoice.select(Invoice.id)
                .where((Invoice.number == number) & (Invoice.status != "draft"))
                .first()
            )
            if row is not None:
                return Redirect(f"/staff/cash/invoices/{row['id']}", status_code=303)
        context = await _ctx(
            request,
            sub="invoices",
            number=number,
            errors={"number": "No invoice with that number."} if number else {},
        )
        return _page("cash/find_invoice.html", context, 404 if number else 200)

    async def _invoice(
        self, request: Request[Any, Any, Any], invoice_id: int, status: int = 200, **kw: Any
    ) -> Template:
        if not 0 < invoice_id <= allocations.MAX_ID:
            raise NotFound("invoice")
        inv = (
            await Invoice.select(
                Invoice.all_columns(),
                Invoice.billing_account.code.as_alias("account_code"),
                Invoice.billing_account.name.as_alias("account_name"),
            )
            .where((Invoice.id == invoice_id) & (Invoice.status != "draft"))
            .first()
        )
        if inv is None:
            raise NotFound("invoice")
        context = await _ctx(
            request,
            sub="invoices",
            inv=inv,
            allocations=await Allocation.select(
                Allocation.all_columns(),
                Allocation.payment.reference.as_alias("reference"),
                Allocation.payment.received_at.as_alias("received_at"),
            )
            .where(Allocation.invoice == invoice_id)
            .order_by(Allocation.id),
            credit_lines=await adjustments.credit_lines(invoice_id),
            requests=await WriteOff.select()
            .where(WriteOff.invoice == invoice_id)
            .order_by(WriteOff.id),
            kinds=adjustments.KINDS,
            **kw,
        )
        return _page("cash/invoice.html", context, status)

    @get("/invoices/{invoice_id:int}", name="staff_cash_invoice")
    async def invoice(self, request: Request[Any, Any, Any], invoice_id: FromPath[int]) -> Template:
        return await self._invoice(request, invoice_id)

    @post("/invoices/{invoice_id:int}/write-off", status_code=303)
    async def request_write_off(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], data: Form
    ) -> Any:
        form = {"wo_reason": _clip(data, "wo_reason")}
        try:
            result = await writeoffs.request_write_off(
                invoice_id, form["wo_reason"], actor_for(request)
            )
        except ValidationFailed as exc:
            errors = {f"wo_{k}": v for k, v in exc.errors.items()}
            return await self._invoice(request, invoice_id, 422, errors=errors, form=form)
        except Conflict as exc:
            return await self._invoice(request, invoice_id, 409, error=str(exc), form=form)
        return Redirect(
            f"/staff/cash/invoices/{invoice_id}?notice={result.status}", status_code=303
        )

    @post("/invoices/{invoice_id:int}/settle", status_code=303)
    async def settle(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], data: Form
    ) -> Any:
        form = {"kind": _clip(data, "kind", 32), "settle_reason": _clip(data, "settle_reason")}
        try:
            await adjustments.settle_invoice(
                invoice_id, form["kind"], form["settle_reason"], actor_for(request)
            )
        except ValidationFailed as exc:
            errors = {f"settle_{k}": v for k, v in exc.errors.items()}
            return await self._invoice(request, invoice_id, 422, errors=errors, form=form)
        except Conflict as exc:
            return await self._invoice(request, invoice_id, 409, error=str(exc), form=form)
        return Redirect(f"/staff/cash/invoices/{invoice_id}?notice=settled", status_code=303)

    # ------------------------------------------------------------------ configuration

    async def _rules(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        currencies = [
            r["currency"] for r in await BillingAccount.select(BillingAccount.currency).distinct()
        ]
        context = await _ctx(
            request, sub="rules", rules=await writeoffs.list_rules(currencies), **kw
        )
        return _page("cash/rules.html", context, status)

    @get("/rules", name="staff_cash_rules")
    async def rules(self, request: Request[Any, Any, Any]) -> Template:
        return await self._rules(request)

    @post("/rules", status_code=303)
    async def save_rule(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: _clip(data, k, 40) for k in ("currency", "max_amount", "max_percent")}
        try:
            limits = writeoffs.parse_rule(form["currency"], form["max_amount"], form["max_percent"])
            await writeoffs.set_rule(form["currency"].strip().upper(), limits, actor_for(request))
        except ValidationFailed as exc:
            return await self._rules(request, status=422, errors=exc.errors, form=form)
        return Redirect("/staff/cash/rules?notice=rule_saved", status_code=303)

    async def _terms(
        self, request: Request[Any, Any, Any], status: int = 200, **kw: Any
    ) -> Template:
        context = await _ctx(request, sub="terms", terms=await adjustments.all_terms(), **kw)
        return _page("cash/terms.html", context, status)

    @get("/discount-terms", name="staff_cash_terms")
    async def terms(self, request: Request[Any, Any, Any]) -> Template:
        return await self._terms(request)

    @post("/discount-terms", status_code=303)
    async def save_terms(self, request: Request[Any, Any, Any], data: Form) -> Any:
        form = {k: _clip(data, k, 40) for k in ("account", "percent", "days")}
        try:
            errors: dict[str, str] = {}
            code = form["account"].strip()
            account = (
                await BillingAccount.select(BillingAccount.id)
                .where(BillingAccount.code == code)
                .first()
                if code
                else None
            )
            if account is None:
                errors["account"] = "Enter the code of an existing billing account."
            try:
                percent, days = adjustments.parse_terms(form["percent"], form["days"])
            except ValidationFailed as exc:
                errors |= exc.errors
            if errors:
                raise ValidationFailed(errors)
            assert account is not None
            await adjustments.set_terms(account["id"], percent, days, actor_for(request))
        except ValidationFailed as exc:
            return await self._terms(request, status=422, errors=exc.errors, form=form)
        return Redirect("/staff/cash/discount-terms?notice=terms_saved", status_code=303)
