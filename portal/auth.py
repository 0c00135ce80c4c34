"""Who is asking: the session behind the request cookie, guards, and the customer scope.

Guards load the session once per request and keep it on ``connection.state``. A
missing or expired session is a 401, which the HTML error handler turns into a
redirect to the sign-in page.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from core.audit.log import Actor
from core.identity.scope import Scope, load_scope
from portal.sessions import SessionData, SessionStore


def session_cookie_name(secure: bool) -> str:
    # The __Host- prefix needs Secure; plain-HTTP development uses an unprefixed name.
    return "__Host-ledgerline" if secure else "ledgerline_session"


def sessions(connection: ASGIConnection) -> SessionStore:
    return connection.app.state.sessions


async def current_session(connection: ASGIConnection) -> SessionData | None:
    if "session" not in connection.state:
        sid = connection.cookies.get(connection.app.state.session_cookie)
        connection.state.session = await sessions(connection).load(sid)
    return connection.state.session


async def requires_customer(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    session = await current_session(connection)
    if session is None:
        raise NotAuthorizedException("Please sign in.")
    if session.kind != "customer":
        raise PermissionDeniedException("This page is for customer users.")


async def requires_staff(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    session = await current_session(connection)
    if session is None:
        raise NotAuthorizedException("Please sign in.")
    if session.kind != "staff":
        raise PermissionDeniedException("This page is for staff.")


def client_ip(connection: ASGIConnection) -> str:
    return connection.client.host if connection.client else ""


def actor_for(connection: ASGIConnection) -> Actor:
    session: SessionData | None = connection.state.get("session")
    return Actor(
        type=session.kind if session else "anonymous",
        id=str(session.user_id) if session else "",
        ip=client_ip(connection),
        user_agent=connection.headers.get("user-agent", "")[:300],
    )


async def provide_scope(request: ASGIConnection) -> Scope:
    """Dependency for customer routes: every query they make goes through this."""
    session = await current_session(request)
    assert session is not None
    assert session.kind == "customer"
    return await load_scope(session.user_id)
