"""Who is asking: the session behind the request cookie, guards, and the customer scope.

Guards load the session once per request and keep it on ``connection.state``. A
missing or expired session is a 401, which the HTML error handler turns into a
redirect to the sign-in page; a session still waiting for its second factor is sent
to finish signing in.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Response

from core.audit.log import Actor
from core.identity.scope import Scope, load_request_scope
from portal.sessions import SessionData, SessionStore


class SignInIncomplete(NotAuthorizedException):
    """Password accepted, but the second factor (or MFA enrollment) is still due."""


def session_cookie_name(secure: bool) -> str:
    # The __Host- prefix needs Secure; plain-HTTP development uses an unprefixed name.
    return "__Host-ledgerline" if secure else "ledgerline_session"


def sessions(connection: ASGIConnection) -> SessionStore:
    return connection.app.state.sessions


async def current_session(connection: ASGIConnection) -> SessionData | None:
    if "session" not in connection.state:
        sid = connection.cookies.get(connection.app.state.session_cookie)
        session = await sessions(connection).load(sid)
        if session is not None and session.assisted:
            # Fail closed: an assisted session counts only once portal.assisted_sessions
            # (app middleware) has re-checked its consent for this request and put it here.
            session = None
        connection.state.session = session
    return connection.state.session


def set_session_cookie(connection: ASGIConnection, response: Response, sid: str) -> None:
    response.set_cookie(
        key=connection.app.state.session_cookie,
        value=sid,
        path="/",
        secure=connection.app.state.cookie_secure,
        httponly=True,
        samesite="lax",
    )


async def _signed_in(connection: ASGIConnection, kind: str) -> SessionData:
    session = await current_session(connection)
    if session is None:
        raise NotAuthorizedException("Please sign in.")
    if not session.full:
        raise SignInIncomplete("Finish signing in.")
    if session.kind != kind:
        raise PermissionDeniedException(
            "This page is for customer users." if kind == "customer" else "This page is for staff."
        )
    return session


async def requires_customer(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    await _signed_in(connection, "customer")


async def requires_customer_action(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """For customer routes that change something: refused in a view-only assisted session."""
    session = await _signed_in(connection, "customer")
    if session.assisted and session.access != "act":
        raise PermissionDeniedException("This assisted session is view-only.")


async def requires_staff(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    await _signed_in(connection, "staff")


async def requires_own_session(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """For pages only the person themselves may use (credentials, MFA, payment-method
    secrets, consent to assisted sessions): refused in an assisted session."""
    session = await current_session(connection)
    if session is not None and session.assisted:
        raise PermissionDeniedException(
            "Not available in an assisted session: only the customer can use this page."
        )


def client_ip(connection: ASGIConnection) -> str:
    return connection.client.host if connection.client else ""


def actor_for(connection: ASGIConnection) -> Actor:
    """The audit actor: an agent in an assisted session acts on behalf of the customer."""
    session: SessionData | None = connection.state.get("session")
    ip = client_ip(connection)
    agent = connection.headers.get("user-agent", "")[:300]
    if session is None:
        return Actor(type="anonymous", id="", ip=ip, user_agent=agent)
    if session.assisted:
        return Actor(
            type="agent",
            id=str(session.agent_id),
            on_behalf_of=f"customer:{session.user_id}",
            ip=ip,
            user_agent=agent,
        )
    return Actor(type=session.kind, id=str(session.user_id), ip=ip, user_agent=agent)


async def provide_scope(request: ASGIConnection) -> Scope:
    """Dependency for customer routes: every query they make goes through this."""
    session = await current_session(request)
    assert session is not None
    assert session.kind == "customer"
    # One query per request: the scope is never cached across requests, so a role or
    # membership change applies to the next request.
    scope, narrowed = await load_request_scope(session.user_id, session.active_entity)
    if not narrowed:  # the chosen entity is no longer visible (a role was removed): every entity
        request.state.session = await sessions(request).update(session, active_entity=None)
    return scope
