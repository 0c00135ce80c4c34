"""Guards for staff pages limited to some staff roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from core.identity.security import staff_role
from portal.auth import current_session

Guard = Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]


def requires_staff_role(roles: Collection[str], refusal: str) -> Guard:
    """A guard (after ``requires_staff``) that lets only ``roles`` through (403 with
    ``refusal`` otherwise) and keeps the role on ``connection.state.staff_role``."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        session = await current_session(connection)
        assert session is not None  # requires_staff runs first
        role = await staff_role(session.user_id)
        if role not in roles:
            raise PermissionDeniedException(refusal)
        connection.state.staff_role = role

    return guard
