"""``/staff/assisted``: an agent asks a customer user for an assisted session, follows
their requests, starts a granted one and withdraws or ends their own.

Starting creates a new customer-kind session for the agent's browser, carrying both
identities and the effective access (grant ∩ staff role), and keeps the agent's staff
session aside (``return_sid``) so ending returns them to this page. The request email
is sent after the request is committed; if it fails the request stands and the
customer still sees it in the portal.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from core.errors import Conflict, ValidationFailed
from core.identity import assisted
from core.identity.security import staff_role
from core.notifications.mailer import mailer
from portal.auth import (
    actor_for,
    client_ip,
    current_session,
    requires_staff,
    sessions,
    set_session_cookie,
)
from portal.sessions import SessionData

log = structlog.get_logger("ledgerline.assisted")

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

NOTICES = {
    "requested": "Request sent. The customer was emailed and sees it in the portal.",
    "requested_unsent": (
        "Request recorded, but the email could not be sent. The customer still sees it "
        "when they open Assisted sessions in the portal."
    ),
    "withdrawn": "Done: the request or session is over.",
    "ended": "The assisted session has ended. You are back in the staff console.",
}


def _clip(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    return value[:limit] if isinstance(value, str) else ""


async def _staff(request: Request[Any, Any, Any]) -> SessionData:
    session = await current_session(request)
    assert session is not None
    assert session.kind == "staff"
    return session


async def send_request_email(request: Request[Any, Any, Any], req: assisted.Requested) -> None:
    settings = request.app.state.settings
    engine = request.app.template_engine
    assert engine is not None
    context = {
        "link": f"{settings.base_url}/assisted",
        "user_name": req.user_name,
        "agent_name": req.agent_name,
        "ticket_ref": req.ticket_ref,
        "reason": req.reason,
        "access": assisted.ACCESS_LABELS[req.access],
        "expires_at": req.expires_at,
        "default_minutes": assisted.DEFAULT_MINUTES,
        "max_minutes": assisted.MAX_MINUTES,
    }
    subject = engine.get_template("emails/assisted_request_subject.txt").render(**context)
    text = engine.get_template("emails/assisted_request.txt").render(**context)
    await mailer().send(req.user_email, " ".join(subject.split()), text)


class StaffAssistedController(Controller):
    path = "/staff/assisted"
    guards = [requires_staff]

    async def _page(
        self,
        request: Request[Any, Any, Any],
        *,
        status: int = 200,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        error: str = "",
    ) -> Template:
        session = await _staff(request)
        role = await staff_role(session.user_id)
        notice = request.query_params.get("notice") or ""
        return Template(
            "staff/assisted.html",
            context={
                "user": session,
                "nav": "staff",
                "rows": await assisted.agent_sessions(session.user_id),
                "may_act": assisted.staff_may_act(role),
                "form": form or {"access": assisted.VIEW},
                "errors": errors or {},
                "error": error,
                "notice": NOTICES.get(notice, ""),
                "reason_max": assisted.REASON_MAX,
                "ticket_max": assisted.TICKET_MAX,
            },
            status_code=status,
            media_type=MediaType.HTML,
        )

    @get("/", name="staff_assisted", media_type=MediaType.HTML)
    async def index(self, request: Request[Any, Any, Any]) -> Template:
        return await self._page(request)

    @post("/", media_type=MediaType.HTML, status_code=303)
    async def request_session(self, request: Request[Any, Any, Any], data: Form) -> Any:
        session = await _staff(request)
        form = {
            "email": _clip(data, "email", 320),
            "reason": _clip(data, "reason", 4 * assisted.REASON_MAX),
            "ticket_ref": _clip(data, "ticket_ref", 4 * assisted.TICKET_MAX),
            "access": _clip(data, "access", 16),
        }
        try:
            req = await assisted.request_assistance(
                agent_id=session.user_id,
                email=form["email"],
                reason=form["reason"],
                ticket_ref=form["ticket_ref"],
                access=form["access"],
                actor=actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._page(request, status=422, form=form, errors=exc.errors)
        notice = "requested"
        try:
            await send_request_email(request, req)
        except Exception:  # the request stands; the customer sees it in the portal
            log.exception("assisted request email failed", assisted_id=req.id)
            notice = "requested_unsent"
        return Redirect(f"/staff/assisted?notice={notice}", status_code=303)

    @post("/{assisted_id:int}/start", media_type=MediaType.HTML, status_code=303)
    async def start(self, request: Request[Any, Any, Any], assisted_id: FromPath[int]) -> Any:
        session = await _staff(request)
        try:
            started = await assisted.start(
                assisted_id, agent_id=session.user_id, actor=actor_for(request)
            )
        except Conflict as exc:
            return await self._page(request, status=409, error=str(exc))
        assisted_session = await sessions(request).create(
            "customer",
            started.user_id,
            started.user_name,
            client_ip(request),
            request.headers.get("user-agent", ""),
            auth_method="assisted",
            assisted_id=started.id,
            agent_id=started.agent_id,
            agent_name=started.agent_name,
            access=started.access,
            return_sid=session.sid,
        )
        # The agent never proved the customer's identity: no "recent sign-in" to lean on.
        assisted_session = await sessions(request).update(assisted_session, reauth_at=0.0)
        response = Redirect("/", status_code=303)
        set_session_cookie(request, response, assisted_session.sid)
        return response

    @post("/{assisted_id:int}/end", media_type=MediaType.HTML, status_code=303)
    async def end(self, request: Request[Any, Any, Any], assisted_id: FromPath[int]) -> Redirect:
        session = await _staff(request)
        await assisted.end_by_agent(assisted_id, agent_id=session.user_id, actor=actor_for(request))
        return Redirect("/staff/assisted?notice=withdrawn", status_code=303)
