"""Assisted sessions at the HTTP edge: consent re-checked and every request audited.

``assisted_sessions`` is app middleware (``portal.app``): it runs for every routed
request except static files and ``/health``, before the route's guards, and loads the
session once for them (``request.state.session``).

* In an agent's assisted session (a customer-kind session with ``assisted_id``) the
  ``AssistedSession`` row is read on every request (one select by primary key, with the
  agent's role). Ended, denied, expired, or either account deactivated: the session is
  deleted and the browser is sent back to the agent's staff session, which was kept
  aside (``SessionData.return_sid``), with a message on ``/staff/assisted``. Otherwise
  the effective access is refreshed (the agent's role may have changed), the staff
  session is kept alive, and the request is audited ``assisted.request`` (method, path,
  final status) with the agent as actor on behalf of the customer, just before the
  response starts, so the event exists once the client has its answer.
* ``portal.auth.current_session`` refuses an assisted session this middleware has not
  vouched for, so forgetting the middleware fails closed.
* ``view_only_guard`` (an app-level guard) refuses anything but reading in a view-only
  assisted session, whatever the route's own guards say; ending the session is allowed.
* Every page learns what the banner (``templates/partials/assisted_banner.html``) shows
  through ``request.state.assisted_banner``: for the agent, whom they are viewing as and
  until when; for a customer's own sessions, the assisted sessions running for them now
  and how many requests wait for their answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.audit.log import AuditRecord, record
from core.identity import assisted
from portal.auth import actor_for, sessions, set_session_cookie
from portal.sessions import SessionData

SKIPPED_PREFIXES = ("/static/", "/health")
LEAVE_PATH = "/assisted/session/end"  # the agent's "End session" button
ALWAYS_ALLOWED = frozenset({LEAVE_PATH, "/logout"})  # leaving is never refused
RETURN_PATH = "/staff/assisted"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
VIEW_ONLY_MESSAGE = (
    "This assisted session is view-only: the customer granted viewing, not changes. "
    "Ask them for a session with view and act access if you need to change something."
)


@dataclass(frozen=True, slots=True)
class AgentBanner:
    """What the agent sees on every page of an assisted session."""

    user_name: str
    access: str
    expires_at: datetime | None
    kind: str = "agent"

    @property
    def access_label(self) -> str:
        return assisted.ACCESS_LABELS.get(self.access, self.access)


@dataclass(frozen=True, slots=True)
class CustomerBanner:
    """What a customer sees on every page of their own sessions."""

    active: tuple[assisted.AssistedView, ...]
    pending: int
    kind: str = "customer"


def is_htmx(connection: ASGIConnection) -> bool:
    return connection.headers.get("hx-request", "").lower() == "true"


async def resume_staff_session(
    connection: ASGIConnection, session: SessionData, response: Response
) -> bool:
    """Point the browser back at the agent's staff session kept aside (under a fresh
    id), or clear the cookie when that session is gone. True when resumed."""
    store = sessions(connection)
    staff = await store.load(session.return_sid) if session.return_sid else None
    if (
        staff is not None
        and staff.kind == "staff"
        and staff.full
        and staff.user_id == session.agent_id
    ):
        rotated = await store.rotate(staff)
        set_session_cookie(connection, response, rotated.sid)
        return True
    response.delete_cookie(connection.app.state.session_cookie, path="/")
    return False


async def leave_assisted_session(
    connection: ASGIConnection, session: SessionData, notice: str, *, resume: bool = True
) -> Response:
    """Delete the assisted session and send the agent back to the staff console (signed
    out instead when ``resume`` is False, e.g. their staff account was deactivated)."""
    store = sessions(connection)
    await store.delete(session.sid)
    if not resume and session.return_sid:
        await store.delete(session.return_sid)
    connection.state.session = None
    target = f"{RETURN_PATH}?notice={notice}"
    response: Response
    if is_htmx(connection):  # a full-page move, not a swap of the console into a fragment
        response = Response(content=b"", status_code=200, headers={"HX-Redirect": target})
    else:
        response = Redirect(target, status_code=303)
    await resume_staff_session(connection, session, response)
    return response


async def view_only_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """App-level guard: in a view-only assisted session only reading is allowed (and
    leaving: ending the session, signing out)."""
    session: SessionData | None = connection.state.get("session")
    if (
        session is not None
        and session.assisted
        and session.access != assisted.ACT
        and connection.scope.get("method", "GET") not in READ_METHODS
        and connection.scope["path"] not in ALWAYS_ALLOWED
    ):
        raise PermissionDeniedException(VIEW_ONLY_MESSAGE)


def assisted_sessions(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SKIPPED_PREFIXES):
            await app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        store = sessions(request)
        session = await store.load(request.cookies.get(request.app.state.session_cookie))
        if session is not None and session.assisted:
            await _assisted_request(app, request, session, scope, receive, send)
            return
        request.state.session = session
        if (
            session is not None
            and session.kind == "customer"
            and session.full
            and not is_htmx(request)  # fragments carry no banner
        ):
            banner = await assisted.banner_for(session.user_id)
            if banner.active or banner.pending:
                request.state.assisted_banner = CustomerBanner(banner.active, banner.pending)
        await app(scope, receive, send)

    return middleware


async def _assisted_request(
    app: ASGIApp,
    request: Request[Any, Any, Any],
    session: SessionData,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    assert session.assisted_id is not None
    assert session.agent_id is not None
    request.state.session = session  # the actor of the audit below
    actor = actor_for(request)
    method, path = scope["method"], scope["path"]
    recorded = False

    async def audit(status: int, refused: str = "") -> None:
        nonlocal recorded
        if recorded:
            return
        recorded = True
        data: dict[str, Any] = {"method": method, "path": path[:300], "status": status}
        if refused:
            data["refused"] = refused
        await record(
            AuditRecord(
                actor=actor,
                action="assisted.request",
                object_type="assisted_session",
                object_id=session.assisted_id or "",
                data=data,
            )
        )

    refusal = ""

    async def send_audited(message: Message) -> None:
        if message["type"] == "http.response.start":
            await audit(int(message["status"]), refusal)
        await send(message)

    check = await assisted.check_live(
        session.assisted_id, agent_id=session.agent_id, user_id=session.user_id
    )
    if not check.active:
        refusal = check.status or "ended"
        response = await leave_assisted_session(
            request, session, "ended", resume=check.status != "deactivated"
        )
        await response.to_asgi_response(app=None, request=request)(scope, receive, send_audited)
        return
    if check.access != session.access:  # e.g. the agent's staff role changed
        session = await sessions(request).update(session, access=check.access)
        request.state.session = session
    if session.return_sid:
        await sessions(request).load(session.return_sid)  # slides its idle timeout
    request.state.assisted_banner = AgentBanner(session.name, session.access, check.expires_at)
    try:
        await app(scope, receive, send_audited)
    except Exception as exc:  # refused before the route (e.g. CSRF): still audited
        await audit(int(getattr(exc, "status_code", 500)))
        raise
    if method == "POST" and path == "/logout" and session.return_sid:
        await sessions(request).delete(session.return_sid)  # signing out signs out fully
