"""Customer administration pages (``/admin/users…``), the public invitation pages
(``/invitations/{token}``) and the entity switcher (``POST /entity``).

The admin pages exist only for customer users who hold the admin role somewhere: for
anyone else every one of these URLs is a 404. Ids outside the admin's area are 404 too
(the services raise ``NotFound``). Changes are refused in any assisted session: a
support agent never manages the customer's users or roles.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from litestar import Controller, MediaType, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from core.errors import Conflict, NotFound, ValidationFailed
from core.identity import admin
from core.identity.admin import AdminArea, InvitationUnusable
from core.identity.roles import CUSTOMER_ROLE_LABELS, CustomerRole
from core.identity.scope import Scope
from core.notifications.mailer import mailer
from portal.auth import (
    actor_for,
    current_session,
    provide_scope,
    requires_customer,
    requires_customer_action,
    sessions,
    set_session_cookie,
)
from portal.customer.nav import ALL_ENTITIES, nav_context, return_path

log = structlog.get_logger("ledgerline.admin")

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

ROLE_HELP = {
    CustomerRole.VIEWER: "sees invoices, documents and payments",
    CustomerRole.PAYER: "a viewer who can also pay",
    CustomerRole.APPROVER: "a payer who can also approve others' payments above the threshold",
    CustomerRole.ADMIN: "manages users, roles and security settings",
}
ROLES = [
    {"value": r.value, "label": CUSTOMER_ROLE_LABELS[r], "help": ROLE_HELP[r]} for r in CustomerRole
]
NOTICES = {
    "role_saved": "Role saved. It applies from the person's next page load.",
    "role_removed": "Role removed. It no longer applies from the person's next page load.",
    "unchanged": "Nothing changed: the person already held that role there.",
    "deactivated": "Account deactivated. The person was signed out everywhere.",
    "reactivated": "Account reactivated. The person can sign in again.",
    "invited": "Invitation sent. The link works once and expires in 7 days.",
    "invite_unsent": (
        "The invitation was recorded but the email could not be sent. "
        "Revoke it and try again in a moment."
    ),
    "revoked": "Invitation revoked: its link no longer works.",
}
STATUS_LABELS = {
    "pending": "Pending",
    "accepted": "Accepted",
    "revoked": "Revoked",
    "expired": "Expired",
}
# Status code of the public invitation page for each reason it cannot be used.
UNUSABLE_STATUS = {"invalid": 404, "expired": 410, "accepted": 410, "revoked": 410}


def _clip(data: dict[str, Any], name: str, limit: int = 1024) -> str:
    value = data.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def requires_customer_admin(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Signed-in customer with the admin role somewhere; everyone else: 404."""
    session = await current_session(connection)
    if session is None or not session.full:
        await requires_customer(connection, handler)  # 401: sign in / finish signing in
    assert session is not None
    if session.kind != "customer":
        raise NotFoundException()
    area = await admin.admin_area(session.user_id)
    if area is None:
        raise NotFoundException()
    connection.state.admin_area = area


async def refuses_assisted(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    session = await current_session(connection)
    if session is not None and session.assisted:
        raise PermissionDeniedException(
            "Users and roles cannot be changed during an assisted session."
        )


ACTION_GUARDS = [requires_customer_action, refuses_assisted]


async def _page(
    request: Request[Any, Any, Any], access: Scope, template: str, status: int = 200, **ctx: Any
) -> Template:
    notice = request.query_params.get("notice")
    context = {
        "user": await current_session(request),
        "nav": "admin",
        "area": request.state.admin_area,
        "roles": ROLES,
        "status_labels": STATUS_LABELS,
        "notice": NOTICES.get(notice or ""),
        "errors": {},
        **ctx,
        **await nav_context(request, access),
    }
    return Template(template, context=context, status_code=status)


def _area(request: Request[Any, Any, Any]) -> AdminArea:
    return request.state.admin_area


class CustomerAdminController(Controller):
    path = "/admin/users"
    guards = [requires_customer_admin]
    dependencies = {"access": Provide(provide_scope)}

    @get("/", name="admin_users", media_type=MediaType.HTML)
    async def users(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        users = await admin.list_users(_area(request))
        return await _page(request, access, "admin/users.html", users=users, sub="users")

    @get("/invite", name="admin_invite", media_type=MediaType.HTML)
    async def invite_form(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        return await _page(
            request,
            access,
            "admin/invite.html",
            sub="invite",
            form={"email": "", "node": "", "role": CustomerRole.VIEWER.value},
        )

    @post("/invite", guards=ACTION_GUARDS, media_type=MediaType.HTML, status_code=303)
    async def invite(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope], data: Form
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        form = {k: _clip(data, k, 320) for k in ("email", "node", "role")}
        try:
            invited = await admin.invite(
                session.user_id,
                email=form["email"],
                node_raw=form["node"],
                role_raw=form["role"],
                actor=actor_for(request),
            )
        except ValidationFailed as exc:
            return await _page(
                request,
                access,
                "admin/invite.html",
                status=422,
                sub="invite",
                form=form,
                errors=exc.errors,
            )
        notice = "invited"
        try:
            await _send_invitation(request, invited, inviter=session.name)
        except Exception:  # the invitation stands; the admin is told to resend
            log.exception("invitation email failed", invitation_id=invited.invitation_id)
            notice = "invite_unsent"
        return Redirect(f"/admin/users/invitations?notice={notice}", status_code=303)

    @get("/invitations", name="admin_invitations", media_type=MediaType.HTML)
    async def invitations(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        rows = await admin.list_invitations(_area(request))
        return await _page(
            request, access, "admin/invitations.html", invitations=rows, sub="invitations"
        )

    @post(
        "/invitations/{invitation_id:int}/revoke",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        invitation_id: FromPath[int],
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        try:
            await admin.revoke_invitation(session.user_id, invitation_id, actor_for(request))
        except Conflict as exc:
            rows = await admin.list_invitations(_area(request))
            return await _page(
                request,
                access,
                "admin/invitations.html",
                status=409,
                invitations=rows,
                sub="invitations",
                error=str(exc),
            )
        return Redirect("/admin/users/invitations?notice=revoked", status_code=303)

    @get("/{user_id:int}", name="admin_user", media_type=MediaType.HTML)
    async def user_detail(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        user_id: FromPath[int],
    ) -> Template:
        return await self._detail(request, access, user_id)

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        access: Scope,
        user_id: int,
        status: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Template:
        session = await current_session(request)
        assert session is not None
        area = _area(request)
        person = await admin.get_user(area, user_id)
        status_problem = admin.status_change_problem(
            actor_id=session.user_id,
            target_id=person.id,
            target_paths=person.role_paths,
            prefixes=area.prefixes,
        )
        return await _page(
            request,
            access,
            "admin/user_detail.html",
            status=status,
            person=person,
            is_self=person.id == session.user_id,
            status_problem=status_problem,
            errors=errors or {},
            form=form or {"node": "", "role": CustomerRole.VIEWER.value},
            sub="users",
        )

    @post("/{user_id:int}/roles", guards=ACTION_GUARDS, media_type=MediaType.HTML, status_code=303)
    async def set_role(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        user_id: FromPath[int],
        data: Form,
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        form = {k: _clip(data, k, 64) for k in ("node", "role")}
        try:
            change = await admin.set_role(
                session.user_id, user_id, form["node"], form["role"], actor_for(request)
            )
        except ValidationFailed as exc:
            return await self._detail(request, access, user_id, 422, exc.errors, form)
        notice = "role_saved" if change.changed else "unchanged"
        return await _after_role_change(request, change, f"/admin/users/{user_id}", notice)

    @post(
        "/{user_id:int}/roles/{node_id:int}/remove",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def remove_role(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        user_id: FromPath[int],
        node_id: FromPath[int],
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        try:
            change = await admin.remove_role(
                session.user_id, user_id, str(node_id), actor_for(request)
            )
        except ValidationFailed as exc:
            return await self._detail(request, access, user_id, 422, exc.errors)
        return await _after_role_change(request, change, f"/admin/users/{user_id}", "role_removed")

    @post(
        "/{user_id:int}/deactivate",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def deactivate(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        user_id: FromPath[int],
    ) -> Any:
        return await self._set_active(request, access, user_id, False)

    @post(
        "/{user_id:int}/reactivate",
        guards=ACTION_GUARDS,
        media_type=MediaType.HTML,
        status_code=303,
    )
    async def reactivate(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        user_id: FromPath[int],
    ) -> Any:
        return await self._set_active(request, access, user_id, True)

    async def _set_active(
        self, request: Request[Any, Any, Any], access: Scope, user_id: int, active: bool
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        try:
            await admin.set_active(session.user_id, user_id, active, actor_for(request))
        except ValidationFailed as exc:
            return await self._detail(request, access, user_id, 422, exc.errors)
        if not active:
            await sessions(request).delete_all_for("customer", user_id)
        notice = "reactivated" if active else "deactivated"
        return Redirect(f"/admin/users/{user_id}?notice={notice}", status_code=303)


async def _after_role_change(
    request: Request[Any, Any, Any], change: admin.RoleChange, target: str, notice: str
) -> Redirect:
    """Redirect after a role change; an admin who changed their own roles gets a new
    session id (privilege change). Others' sessions pick the change up on their next
    request, as the scope is loaded per request."""
    response = Redirect(f"{target}?notice={notice}", status_code=303)
    session = await current_session(request)
    if change.self_change and change.changed and session is not None:
        rotated = await sessions(request).rotate(session)
        request.state.session = rotated
        set_session_cookie(request, response, rotated.sid)
    return response


async def _send_invitation(
    request: Request[Any, Any, Any], invited: admin.Invited, inviter: str
) -> None:
    settings = request.app.state.settings
    engine = request.app.template_engine
    assert engine is not None
    context = {
        "link": f"{settings.base_url}/invitations/{invited.token}",
        "inviter": inviter,
        "organization": invited.organization_name,
        "role": CUSTOMER_ROLE_LABELS[invited.role],
        "role_help": ROLE_HELP[invited.role],
        "expires_at": invited.expires_at,
        "days": admin.INVITATION_DAYS,
    }
    subject = engine.get_template("emails/invitation_subject.txt").render(**context)
    text = engine.get_template("emails/invitation.txt").render(**context)
    await mailer().send(invited.email, " ".join(subject.split()), text)


# ---------------------------------------------------------------------------- invitations


def _unusable(
    request: Request[Any, Any, Any], reason: str, user: Any, status: int | None = None
) -> Template:
    return Template(
        "invitations/unavailable.html",
        context={
            "user": user,
            "reason": reason,
            "message": admin.UNUSABLE_REASONS.get(reason, admin.UNUSABLE_REASONS["invalid"]),
        },
        status_code=status or UNUSABLE_STATUS.get(reason, 409),
        media_type=MediaType.HTML,
    )


def _signed_in_customer(session: Any) -> int | None:
    if session is None or session.kind != "customer" or not session.full or session.assisted:
        return None
    return int(session.user_id)


class InvitationController(Controller):
    """Public: the link in the invitation email. No session needed (CSRF still applies)."""

    path = "/invitations"

    @get("/{token:str}", name="invitation", media_type=MediaType.HTML)
    async def show(self, request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
        return await self._show(request, token)

    async def _show(
        self,
        request: Request[Any, Any, Any],
        token: str,
        status: int = 200,
        errors: dict[str, str] | None = None,
        name: str = "",
    ) -> Template:
        session = await current_session(request)
        try:
            view = await admin.invitation_for_token(token)
        except InvitationUnusable as exc:
            return _unusable(request, exc.reason, session)
        if view.status != "pending":
            return _unusable(request, view.status, session)
        if view.existing_user in ("other_group", "inactive"):
            return _unusable(request, view.existing_user, session)
        mode = "new"
        if view.existing_user == "same_group":
            signed_in = _signed_in_customer(session)
            if signed_in is None:
                mode = "sign_in"
            elif signed_in == view.existing_user_id:
                mode = "accept"
            else:
                mode = "wrong_user"
        return Template(
            "invitations/accept.html",
            context={
                "user": session,
                "invitation": view,
                "token": token,
                "mode": mode,
                "errors": errors or {},
                "name": name,
                "message": admin.UNUSABLE_REASONS.get(mode, ""),
            },
            status_code=status,
        )

    @post("/{token:str}", media_type=MediaType.HTML, status_code=303)
    async def accept(
        self, request: Request[Any, Any, Any], token: FromPath[str], data: Form
    ) -> Any:
        session = await current_session(request)
        name = _clip(data, "name", 400)
        try:
            accepted = await admin.accept_invitation(
                token,
                name=name,
                password=_clip(data, "password", 1025),
                signed_in_user_id=_signed_in_customer(session),
                actor=actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._show(request, token, 422, exc.errors, name)
        except InvitationUnusable as exc:
            return _unusable(request, exc.reason, session)
        if accepted.created:
            return Template(
                "invitations/accepted.html",
                context={"user": session, "email": accepted.email},
                status_code=200,
            )
        # An existing account gained a role: a privilege change, so a new session id.
        assert session is not None
        rotated = await sessions(request).rotate(session)
        response = Redirect("/", status_code=303)
        set_session_cookie(request, response, rotated.sid)
        return response


# ---------------------------------------------------------------------------- entity switcher


class EntityController(Controller):
    """``POST /entity``: choose the organization node the customer pages show (its
    subtree), or every entity the user can see."""

    path = "/entity"
    guards = [requires_customer]
    dependencies = {"access": Provide(provide_scope)}

    @post("/", name="switch_entity", media_type=MediaType.HTML, status_code=303)
    async def switch(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope], data: Form
    ) -> Redirect:
        raw = _clip(data, "entity", 32).strip()
        node_id = None
        if raw != ALL_ENTITIES:
            node_id = admin.parse_id(raw)
            if node_id is None or node_id not in access.visible_organization_ids:
                raise NotFound("organization")
        session = await current_session(request)
        assert session is not None
        request.state.session = await sessions(request).update(session, active_entity=node_id)
        return Redirect(return_path(_clip(data, "next", 600)), status_code=303)
