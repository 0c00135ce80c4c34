"""Customer wallet pages: saved payment methods, autopay, payment history (with CSV
export) and receipts.

Who may do what (checked here on the server; the templates only hide what is refused):

* every customer user sees the group's saved methods, the autopay state of the accounts
  in their scope, their payment history and receipts;
* adding a method, removing one and choosing the default need the payer role (or above)
  somewhere in the group: methods belong to the group;
* turning autopay on or off needs the payer role on that billing account;
* adding a method and accepting an autopay mandate are refused in any assisted session
  (only the customer types card data at Stripe or consents); in an assisted session with
  "act" access the agent may remove a method, choose the default or turn autopay off
  (audited as the agent on behalf of the customer); a view-only session changes nothing.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import Body, FromPath
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from core.audit.log import AuditRecord, record
from core.errors import NotFound, ValidationFailed
from core.identity.roles import CustomerRole
from core.identity.scope import Scope
from core.money import Money
from core.payments.queries import group_root
from core.wallet import autopay, history, methods
from core.wallet.rules import MANDATE_VERSION, may_manage_methods
from portal.auth import (
    actor_for,
    client_ip,
    current_session,
    provide_scope,
    requires_customer,
    requires_customer_action,
    requires_own_session,
)
from portal.customer.nav import nav_context
from portal.wallet.filters import filter_query, parse_payment_filter

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
RESULTS_TARGET = "payment-results"
NOTICES = {
    "added": ("success", "Payment method saved."),
    "pending": (
        "info",
        "Stripe has not confirmed the new payment method yet. It appears here once it has.",
    ),
    "canceled": ("info", "Adding a payment method was canceled. Nothing was saved."),
    "removed": ("success", "Payment method removed."),
    "default": ("success", "Default payment method changed."),
    "enrolled": ("success", "Autopay is on. Invoices are charged on their due date."),
    "disenrolled": ("success", "Autopay is off. No new charges will start."),
    "not_enrolled": ("info", "Autopay was already off."),
}
ACTION_GUARDS = [requires_customer_action]
OWN_ACTION_GUARDS = [requires_customer_action, requires_own_session]


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.app.state.settings.base_url).rstrip("/")


def _notice(request: Request[Any, Any, Any]) -> tuple[str, str] | None:
    return NOTICES.get(request.query_params.get("notice") or "")


async def _root(access: Scope) -> int:
    root = await group_root(access)
    if root is None:
        raise NotFoundException()
    return root


def _may_manage(access: Scope) -> bool:
    return may_manage_methods(access.role_by_organization.values())


async def _context(request: Request[Any, Any, Any], access: Scope, nav: str) -> dict[str, Any]:
    session = await current_session(request)
    return {
        "user": session,
        "nav": nav,
        "assisted": bool(session and session.assisted),
        "notice": _notice(request),
        **await nav_context(request, access),
    }


class WalletController(Controller):
    path = "/wallet"
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    # --- saved payment methods -------------------------------------------------------

    async def _methods_page(
        self,
        request: Request[Any, Any, Any],
        access: Scope,
        status: int = 200,
        error: str = "",
    ) -> Template:
        root = await _root(access)
        saved = await methods.saved_methods(root)
        overview = await autopay.autopay_overview(access)
        autopay_by_method: dict[int, list[str]] = {}
        for a in overview:
            if a.method_id is not None:
                autopay_by_method.setdefault(a.method_id, []).append(a.name)
        return Template(
            "wallet/methods.html",
            context={
                **await _context(request, access, "wallet"),
                "methods": saved,
                "may_manage": _may_manage(access),
                "autopay_by_method": autopay_by_method,
                "error": error,
            },
            status_code=status,
        )

    @get("/methods", name="wallet_methods", media_type=MediaType.HTML)
    async def methods_page(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        return await self._methods_page(request, access)

    @post("/methods/add", guards=OWN_ACTION_GUARDS, media_type=MediaType.HTML, status_code=200)
    async def add_method(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Any:
        if not _may_manage(access):
            raise PermissionDeniedException("Adding a payment method needs the payer role.")
        root = await _root(access)
        session = await current_session(request)
        assert session is not None
        url = await methods.start_setup(
            root_org_id=root,
            user_id=session.user_id,
            base_url=_base_url(request),
            actor=actor_for(request),
        )
        # A page that moves on to Stripe (meta refresh plus a link), not a redirect: our
        # CSP's form-action 'self' blocks a form answer that redirects to another origin.
        return Template(
            "wallet/continue.html",
            context={**await _context(request, access, "wallet"), "url": url},
        )

    @get("/methods/added", name="wallet_method_added", media_type=MediaType.HTML)
    async def method_added(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Any:
        """Stripe Checkout's success page: record the method now (the webhook may come
        before or after; both end in one saved method)."""
        session_id = (request.query_params.get("session_id") or "").strip()
        root = await _root(access)
        try:
            saved = await methods.complete_setup_session(session_id, root_org_id=root)
        except NotFound as exc:
            raise NotFoundException() from exc
        notice = "added" if saved is not None else "pending"
        return Redirect(f"/wallet/methods?notice={notice}", status_code=303)

    async def _own_method(self, access: Scope, method_id: int) -> int:
        """The group's root when ``method_id`` is one of its saved methods (else 404) and
        the user may manage methods (else 403)."""
        root = await _root(access)
        if method_id not in {m.id for m in await methods.saved_methods(root)}:
            raise NotFoundException()
        if not _may_manage(access):
            raise PermissionDeniedException("Managing payment methods needs the payer role.")
        return root

    @post(
        "/methods/{method_id:int}/remove",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def remove_method(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        method_id: FromPath[int],
    ) -> Any:
        root = await self._own_method(access, method_id)
        try:
            await methods.remove_method(
                root_org_id=root, method_id=method_id, actor=actor_for(request)
            )
        except ValidationFailed as exc:
            return await self._methods_page(
                request, access, status=409, error=exc.errors.get("method", str(exc))
            )
        return Redirect("/wallet/methods?notice=removed", status_code=303)

    @post(
        "/methods/{method_id:int}/default",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def default_method(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        method_id: FromPath[int],
    ) -> Any:
        root = await self._own_method(access, method_id)
        await methods.set_default(root_org_id=root, method_id=method_id, actor=actor_for(request))
        return Redirect("/wallet/methods?notice=default", status_code=303)

    # --- autopay ---------------------------------------------------------------------

    async def _autopay_page(
        self,
        request: Request[Any, Any, Any],
        access: Scope,
        status: int = 200,
        errors: dict[int, dict[str, str]] | None = None,
    ) -> Template:
        root = await _root(access)
        return Template(
            "wallet/autopay.html",
            context={
                **await _context(request, access, "wallet"),
                "accounts": await autopay.autopay_overview(access),
                "methods": await methods.saved_methods(root),
                "mandate_version": MANDATE_VERSION,
                "errors": errors or {},
            },
            status_code=status,
        )

    @get("/autopay", name="wallet_autopay", media_type=MediaType.HTML)
    async def autopay_page(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        return await self._autopay_page(request, access)

    def _payer(self, access: Scope, account_id: int) -> None:
        if account_id not in access.billing_account_ids:
            raise NotFoundException()
        if not access.may(CustomerRole.PAYER, account_id):
            raise PermissionDeniedException("Autopay needs the payer role on this account.")

    @post(
        "/autopay/{account_id:int}/enroll",
        guards=OWN_ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def enroll(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        account_id: FromPath[int],
        data: Form,
    ) -> Any:
        self._payer(access, account_id)
        try:
            await autopay.enroll(
                access,
                billing_account_id=account_id,
                method_raw=str(data.get("method") or "")[:20],
                agreed=data.get("agree") == "yes",
                mandate_version=str(data.get("mandate_version") or "")[:32],
                ip=client_ip(request),
                actor=actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._autopay_page(
                request, access, status=422, errors={account_id: exc.errors}
            )
        return Redirect(f"/wallet/autopay?notice=enrolled#account-{account_id}", status_code=303)

    @post(
        "/autopay/{account_id:int}/disenroll",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def disenroll(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        account_id: FromPath[int],
    ) -> Any:
        self._payer(access, account_id)
        was_on = await autopay.disenroll(
            access, billing_account_id=account_id, actor=actor_for(request)
        )
        notice = "disenrolled" if was_on else "not_enrolled"
        return Redirect(f"/wallet/autopay?notice={notice}", status_code=303)

    # --- payment history and receipts ------------------------------------------------

    @get("/payments", name="wallet_payments", media_type=MediaType.HTML)
    async def payments(self, request: HTMXRequest, access: NamedDependency[Scope]) -> Template:
        f, errors = parse_payment_filter(request.query_params)
        try:
            page = await history.list_payments(access, f)
        except NotFound as exc:
            raise NotFoundException() from exc
        fragment = bool(request.htmx) and request.htmx.target == RESULTS_TARGET
        context: dict[str, Any] = {
            "user": await current_session(request),
            "nav": "payments",
            "f": f,
            "errors": errors,
            "page": page,
            "query": lambda **changes: filter_query(f, **changes),
            "fragment": fragment,
            "method_labels": history.METHOD_FILTERS,
            "payment_status_labels": history.STATUS_FILTERS,
        }
        if not fragment:
            context |= {
                "accounts": await history.account_options(access),
                "per_page_choices": history.PER_PAGE_CHOICES,
                **await nav_context(request, access),
            }
        template = "wallet/_payment_results.html" if fragment else "wallet/payments.html"
        return Template(template, context=context, headers={"Vary": "HX-Request, HX-Target"})

    @get("/payments/export.csv", name="wallet_payments_export")
    async def export(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Response[str]:
        f, _ = parse_payment_filter(request.query_params)
        try:
            rows = await history.export_rows(access, f)
        except NotFound as exc:
            raise NotFoundException() from exc
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "receipt",
                "received_at",
                "billing_account",
                "organization",
                "method",
                "status",
                "currency",
                "amount",
                "unapplied",
                "reference",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r["receipt_number"],
                    r["received_at"].isoformat(),
                    r["account_name"],
                    r["organization_name"],
                    r["method_label"],
                    r["status"],
                    r["currency"],
                    Money.from_minor(r["amount_minor"], r["currency"]).amount,
                    Money.from_minor(r["unapplied_minor"], r["currency"]).amount,
                    _csv_safe(r["reference"] or r["stripe_payment_intent"] or ""),
                ]
            )
        await record(
            AuditRecord(
                actor_for(request),
                "payments.exported",
                "payment_list",
                data={"rows": len(rows), "filter": filter_query(f)},
            )
        )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="payments.csv"'},
        )

    @get("/receipts/{payment_id:int}", name="wallet_receipt", media_type=MediaType.HTML)
    async def receipt(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        payment_id: FromPath[int],
    ) -> Template:
        try:
            receipt = await history.get_receipt(access, payment_id)
        except NotFound as exc:
            raise NotFoundException() from exc
        return Template(
            "wallet/receipt.html",
            context={
                **await _context(request, access, "payments"),
                "r": receipt,
                "method_labels": history.METHOD_FILTERS,
                "payment_status_labels": history.STATUS_FILTERS,
            },
        )


def _csv_safe(value: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
