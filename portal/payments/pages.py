"""Customer pay pages: pay one, part of one or many invoices (Stripe Checkout or a saved
method), the attempt's status page (Checkout returns here), and approvals.

Handlers parse and shape; ``core.payments`` decides. The pay form carries a hidden
idempotency key made when it is rendered, so a double submit makes one attempt.
Leaving for Stripe's hosted page goes through a small "continue" page (meta refresh plus
a link) because our CSP's ``form-action 'self'`` blocks a form answer that redirects to
another origin.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from core.errors import NotFound, ValidationFailed
from core.idempotency import store as idem
from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from core.invoicing.queries import get_invoice
from core.payments import attempts as pay
from core.payments.queries import group_root, may_approve, payable_accounts, payable_invoices
from core.wallet.methods import saved_methods
from portal.auth import actor_for, current_session, provide_scope, requires_customer
from portal.auth import requires_customer_action as action
from portal.customer.invoices import may_pay_now
from portal.customer.nav import nav_context
from portal.payments.forms import PayForm, items_from, read_form, totals_by_currency

STATUS_TEXT = {
    "pending_approval": "Waiting for approval",
    "ready": "Ready to pay",
    "unknown": "Being confirmed",
    "processing": "Processing",
    "requires_action": "Needs your action",
    "succeeded": "Paid",
    "failed": "Failed",
    "canceled": "Canceled",
    "rejected": "Rejected",
}
NOT_A_PAYER = (
    "Your role lets you view invoices but not pay them. Ask a payer or approver of your "
    "organization."
)


def _refuse(exc: pay.NotPermitted | None = None) -> PermissionDeniedException:
    return PermissionDeniedException(str(exc) if exc else NOT_A_PAYER)


async def _context(request: Request[Any, Any, Any], access: Scope, **ctx: Any) -> dict[str, Any]:
    return {
        "user": await current_session(request),
        "nav": "pay",
        "status_text": STATUS_TEXT,
        **ctx,
        **await nav_context(request, access),
    }


def _query_ids(request: Request[Any, Any, Any]) -> list[int] | None:
    raw = request.query_params.getall("invoice", [])
    if not raw:
        return None
    ids = []
    for value in raw[:200]:
        if value.isdigit() and 0 < int(value) <= 2**31 - 1:
            ids.append(int(value))
    return ids


async def _methods(access: Scope) -> list[Any]:
    root = await group_root(access)
    return [] if root is None else await saved_methods(root)


async def _pay_page(
    request: Request[Any, Any, Any],
    access: Scope,
    *,
    only: list[int] | None,
    form: PayForm | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    invoices = await payable_invoices(access, only)
    if form is None:
        preselect = set(only or [])
        form = PayForm(
            selected=[i["id"] for i in invoices if i["id"] in preselect],
            raw_amounts={i["id"]: _plain(i["available_minor"], i["currency"]) for i in invoices},
            idempotency_key=str(uuid.uuid4()),
        )
    else:
        for i in invoices:
            form.raw_amounts.setdefault(i["id"], _plain(i["available_minor"], i["currency"]))
    items, _ = items_from(form, {i["id"]: i for i in invoices})
    totals = totals_by_currency(items, {i["id"]: i["currency"] for i in invoices})
    return Template(
        "payments/pay.html",
        context=await _context(
            request,
            access,
            invoices=invoices,
            form=form,
            errors=errors or {},
            totals=totals,
            methods=await _methods(access),
            only=only,
        ),
        status_code=status,
    )


def _plain(minor: int, currency_code: str) -> str:
    from core.money import Money

    return str(Money.from_minor(minor, currency_code).amount)


class PayController(Controller):
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    @get("/pay", name="pay", media_type=MediaType.HTML)
    async def pay_form(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        if not payable_accounts(access):
            raise _refuse()
        return await _pay_page(request, access, only=_query_ids(request))

    @get("/pay/totals", name="pay_totals", media_type=MediaType.HTML)
    async def totals(self, request: HTMXRequest, access: NamedDependency[Scope]) -> Template:
        """The live totals per currency (htmx swaps them in as the form changes)."""
        if not payable_accounts(access):
            raise _refuse()
        form = read_form(request.query_params)
        invoices = await payable_invoices(access, form.selected)
        by_id = {i["id"]: i for i in invoices}
        items, errors = items_from(form, by_id)
        for item in items:
            inv = by_id[item.invoice_id]
            if item.amount_minor <= 0:
                errors[f"amount_{item.invoice_id}"] = (
                    f"{inv['number']}: enter an amount above zero."
                )
            elif item.amount_minor > inv["available_minor"]:
                errors[f"amount_{item.invoice_id}"] = (
                    f"{inv['number']}: the amount exceeds the open balance."
                )
        totals = totals_by_currency(items, {i["id"]: i["currency"] for i in invoices})
        if len(totals) > 1:
            errors["currency"] = (
                "This payment mixes currencies. Pay invoices of each currency separately."
            )
        return Template(
            "payments/_totals.html",
            context={"totals": totals, "errors": errors, "count": len(items)},
        )

    @post("/pay", name="pay_submit", guards=[action], media_type=MediaType.HTML, status_code=303)
    async def submit(self, request: Request[Any, Any, Any], access: NamedDependency[Scope]) -> Any:
        if not payable_accounts(access):
            raise _refuse()
        data = await request.form()
        form = read_form(data)
        only = [int(v) for v in data.getall("only", [])[:200] if str(v).isdigit()] or None
        invoices = await payable_invoices(access, form.selected)
        by_id = {i["id"]: i for i in invoices}
        for invoice_id in form.selected:
            if invoice_id not in by_id:
                inv = await get_invoice(access, invoice_id)  # out of scope: NotFound (404)
                if inv["status"] == "open":
                    raise _refuse()  # visible, but the user is not a payer there
                form.errors["invoices"] = f"Invoice {inv['number']} is no longer open."
        items, errors = items_from(form, by_id)
        methods = {f"saved:{m.id}": m for m in await _methods(access)}
        if form.method != "checkout" and form.method not in methods:
            errors["method"] = "Choose how to pay."
        if not form.selected:
            errors["invoices"] = "Choose at least one invoice to pay."
        if errors:
            return await _pay_page(request, access, only=only, form=form, errors=errors, status=422)
        root = await group_root(access)
        session = await current_session(request)
        assert root is not None
        assert session is not None
        try:
            claim = await idem.claim(
                root,
                form.idempotency_key,
                "portal:pay",
                idem.fingerprint(form.fingerprint_payload()),
            )
        except idem.KeyReused:
            form.idempotency_key = str(uuid.uuid4())
            return await _pay_page(
                request,
                access,
                only=only,
                form=form,
                errors={"invoices": "This form was already submitted with other choices."},
                status=422,
            )
        except ValidationFailed:  # no usable key: a fresh form gets one
            form.idempotency_key = str(uuid.uuid4())
            return await _pay_page(
                request,
                access,
                only=only,
                form=form,
                errors={"invoices": "The form expired. Check the amounts and pay again."},
                status=422,
            )
        if claim.replay is not None:
            return Redirect(claim.replay.body.decode(), status_code=303)
        saved = methods.get(form.method)
        actor = actor_for(request)
        try:
            if claim.resource_id is not None:
                attempt = await pay.get_attempt(claim.resource_id)
            else:
                attempt = await pay.create_attempt(
                    organization_root_id=root,
                    items=items,
                    kind="checkout" if saved is None else "saved_method",
                    user_id=session.user_id,
                    actor=actor,
                    scope=access,
                    stripe_customer=saved.stripe_customer if saved else "",
                    payment_method=saved.stripe_payment_method if saved else "",
                    idempotency_record=claim.record_id,
                )
        except ValidationFailed as exc:
            await idem.release(claim.record_id)
            form.idempotency_key = str(uuid.uuid4())
            return await _pay_page(
                request, access, only=only, form=form, errors=exc.errors, status=422
            )
        except pay.NotPermitted as exc:
            await idem.release(claim.record_id)
            raise _refuse(exc) from exc
        except NotFound:
            await idem.release(claim.record_id)
            raise
        try:
            location = f"/pay/attempts/{attempt.id}"
            if attempt.status == "ready" and saved is None:
                await pay.start_checkout(attempt.id, actor)
                location = f"/pay/attempts/{attempt.id}/checkout"
            elif attempt.status in ("ready", "unknown", "failed") and saved is not None:
                # the customer is here: an on-session payment, which their bank may
                # want to authenticate (3-D Secure) on a page of its own
                status = await pay.charge_saved_method(
                    attempt.id,
                    stripe_customer=saved.stripe_customer,
                    payment_method=saved.stripe_payment_method,
                    actor=actor,
                    off_session=False,
                )
                if status == "requires_action":
                    location = f"/pay/attempts/{attempt.id}/authenticate"
        except Exception:
            await idem.abandon(claim.record_id)
            raise
        await idem.complete(claim.record_id, 303, location.encode(), "text/plain")
        return Redirect(location, status_code=303)

    @get("/pay/attempts/{attempt_id:int}", name="pay_attempt", media_type=MediaType.HTML)
    async def attempt_page(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        attempt_id: FromPath[int],
    ) -> Template:
        attempt, items = await pay.scoped_attempt(attempt_id, access)
        came_back = request.query_params.get("checkout")
        if came_back == "success" and attempt.status in ("processing", "unknown"):
            await pay.settle_attempt(attempt_id, actor_for(request))
        elif attempt.status == "requires_action" and request.query_params.get("payment_intent"):
            # back from the bank's authentication page: what does Stripe say now?
            await pay.settle_attempt(attempt_id, actor_for(request))
        elif came_back == "canceled" and attempt.status == "processing":
            await pay.cancel_checkout(attempt_id, actor_for(request))
        attempt, items = await pay.scoped_attempt(attempt_id, access)
        may_pay = all(access.may(CustomerRole.PAYER, i["billing_account"]) for i in items)
        return Template(
            "payments/attempt.html",
            context=await _context(
                request,
                access,
                attempt=attempt,
                items=items,
                may_continue=may_pay and attempt.status == "ready" and attempt.kind == "checkout",
                came_back=came_back,
            ),
        )

    @post(
        "/pay/attempts/{attempt_id:int}/checkout",
        name="pay_attempt_checkout",
        guards=[action],
        status_code=303,
    )
    async def continue_checkout(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        attempt_id: FromPath[int],
    ) -> Redirect:
        attempt, items = await pay.scoped_attempt(attempt_id, access)
        if not all(access.may(CustomerRole.PAYER, i["billing_account"]) for i in items):
            raise _refuse()
        if attempt.status == "ready":
            await pay.start_checkout(attempt_id, actor_for(request))
        return Redirect(f"/pay/attempts/{attempt_id}/checkout", status_code=303)

    @get(
        "/pay/attempts/{attempt_id:int}/checkout",
        name="pay_attempt_go",
        media_type=MediaType.HTML,
    )
    async def go_to_checkout(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        attempt_id: FromPath[int],
    ) -> Any:
        attempt, _items = await pay.scoped_attempt(attempt_id, access)
        if attempt.status != "processing" or not attempt.stripe_checkout_session:
            return Redirect(f"/pay/attempts/{attempt_id}", status_code=303)
        url = await pay.start_checkout(attempt_id, actor_for(request))  # the open session's URL
        return Template(
            "payments/continue.html",
            context=await _context(request, access, attempt=attempt, url=url),
        )

    @get(
        "/pay/attempts/{attempt_id:int}/authenticate",
        name="pay_attempt_authenticate",
        media_type=MediaType.HTML,
    )
    async def go_to_authentication(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        attempt_id: FromPath[int],
    ) -> Any:
        """The bank's 3-D Secure page for a saved-card payment that needs it (a page with
        a link and a refresh, not a redirect: the CSP's form-action 'self' would stop a
        form answer that redirects to another origin)."""
        attempt, _items = await pay.scoped_attempt(attempt_id, access)
        url = await pay.authentication_url(attempt_id)
        if url is None:
            return Redirect(f"/pay/attempts/{attempt_id}", status_code=303)
        return Template(
            "payments/continue.html",
            context=await _context(
                request,
                access,
                attempt=attempt,
                url=url,
                heading="Confirm with your bank",
                lead="Your bank asks you to confirm this payment of",
                link_text="Continue to your bank",
                link_testid="authenticate-continue",
            ),
        )

    @get("/pay/button/{invoice_id:int}", name="pay_button", media_type=MediaType.HTML)
    async def pay_button(
        self, access: NamedDependency[Scope], invoice_id: FromPath[int]
    ) -> Response[str]:
        """The Pay button alone (the invoice page renders it itself; kept for clients
        that refresh it with htmx): empty unless the user may pay this open invoice."""
        inv = await get_invoice(access, invoice_id)  # out of scope: 404 like every customer route
        if not await may_pay_now(access, inv):
            return Response("", media_type=MediaType.HTML)
        return Template(  # type: ignore[return-value]
            "payments/_pay_button.html", context={"inv": inv}
        )

    @get("/pay/nav", name="pay_nav", media_type=MediaType.HTML)
    async def pay_nav(self, access: NamedDependency[Scope]) -> Template:
        """The Pay and Approvals links alone (every customer page renders them itself in
        its navigation; kept for clients that refresh them with htmx)."""
        return Template(
            "payments/_nav.html",
            context={"may_pay": bool(payable_accounts(access)), "may_approve": may_approve(access)},
        )

    # ------------------------------------------------------------------- approvals

    @get("/approvals", name="approvals", media_type=MediaType.HTML)
    async def approvals(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        if not may_approve(access):
            raise PermissionDeniedException("Only approvers can see payments waiting for approval.")
        notice = request.query_params.get("notice", "")
        return Template(
            "payments/approvals.html",
            context=await _context(
                request,
                access,
                nav="approvals",
                pending=await pay.pending_approvals(access),
                notice=notice if notice in ("approved", "rejected") else "",
            ),
        )

    @post(
        "/approvals/{attempt_id:int}/approve",
        name="approve",
        guards=[action],
        status_code=303,
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        attempt_id: FromPath[int],
    ) -> Redirect:
        session = await current_session(request)
        assert session is not None
        try:
            await pay.approve_attempt(
                attempt_id, approver_user_id=session.user_id, scope=access, actor=actor_for(request)
            )
        except pay.NotPermitted as exc:
            raise _refuse(exc) from exc
        return Redirect("/approvals?notice=approved", status_code=303)

    @post(
        "/approvals/{attempt_id:int}/reject",
        name="reject",
        guards=[action],
        status_code=303,
    )
    async def reject(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        attempt_id: FromPath[int],
    ) -> Redirect:
        session = await current_session(request)
        assert session is not None
        data = await request.form()
        try:
            await pay.reject_attempt(
                attempt_id,
                approver_user_id=session.user_id,
                scope=access,
                actor=actor_for(request),
                reason=str(data.get("reason") or "")[:500],
            )
        except pay.NotPermitted as exc:
            raise _refuse(exc) from exc
        return Redirect("/approvals?notice=rejected", status_code=303)
