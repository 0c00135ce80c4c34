"""``/assisted``: a customer decides on support agents' requests for an assisted
session, ends a running one at once, and reads what was done in past ones.

Only the person themselves (never an agent in an assisted session: ``requires_own_session``)
may use these pages. A customer admin also sees and decides on the requests of the
people their admin area fully covers; anything else is 404.

``POST /assisted/session/end`` is the agent's "End session" button on the banner of an
assisted session: it ends the session and returns the agent to the staff console.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromPath
from litestar.response import Redirect, Response, Template

from core.errors import Conflict, ValidationFailed
from core.identity import assisted
from core.identity.scope import Scope
from portal.assisted_sessions import LEAVE_PATH, leave_assisted_session
from portal.auth import (
    actor_for,
    current_session,
    provide_scope,
    requires_customer,
    requires_own_session,
)
from portal.customer.nav import nav_context

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

NOTICES = {
    "granted": "Access granted. The agent can start the session now; you can end it at any time.",
    "denied": "Request denied. The agent cannot start a session from it.",
    "ended": "The assisted session has ended. The agent no longer sees your portal.",
    "already_over": "That assisted session was already over.",
}


def _clip(data: dict[str, Any], name: str, limit: int = 64) -> str:
    value = data.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _safe_next(target: str) -> str | None:
    if (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and len(target) <= 512
        and target.isascii()
        and target.isprintable()
    ):
        return target
    return None


async def requires_assisted(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    session = await current_session(connection)
    if session is None or not session.assisted:
        raise PermissionDeniedException("There is no assisted session to end.")


class CustomerAssistedController(Controller):
    path = "/assisted"
    guards = [requires_customer, requires_own_session]
    dependencies = {"access": Provide(provide_scope)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        access: Scope,
        *,
        status: int = 200,
        errors: dict[int, dict[str, str]] | None = None,
        forms: dict[int, dict[str, str]] | None = None,
        error: str = "",
    ) -> Template:
        session = await current_session(request)
        assert session is not None
        overview = await assisted.customer_overview(session.user_id)
        return Template(
            "assisted/index.html",
            context={
                "user": session,
                "nav": "assisted",
                "overview": overview,
                "errors": errors or {},
                "forms": forms or {},
                "error": error,
                "notice": NOTICES.get(request.query_params.get("notice") or "", ""),
                "durations": assisted.DURATION_CHOICES,
                "default_minutes": assisted.DEFAULT_MINUTES,
                "access_labels": assisted.ACCESS_LABELS,
                **await nav_context(request, access),
            },
            status_code=status,
            media_type=MediaType.HTML,
        )

    @get("/", name="assisted", media_type=MediaType.HTML)
    async def index(
        self, request: Request[Any, Any, Any], access: NamedDependency[Scope]
    ) -> Template:
        return await self._page(request, access)

    @post("/{assisted_id:int}/grant", media_type=MediaType.HTML, status_code=303)
    async def grant(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        assisted_id: FromPath[int],
        data: Form,
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        form = {"minutes": _clip(data, "minutes", 8), "access": _clip(data, "access", 16)}
        try:
            await assisted.grant(
                assisted_id,
                decider_id=session.user_id,
                minutes=form["minutes"],
                access=form["access"],
                actor=actor_for(request),
            )
        except ValidationFailed as exc:
            return await self._page(
                request,
                access,
                status=422,
                errors={assisted_id: exc.errors},
                forms={assisted_id: form},
            )
        except Conflict as exc:
            return await self._page(request, access, status=409, error=str(exc))
        return Redirect("/assisted?notice=granted", status_code=303)

    @post("/{assisted_id:int}/deny", media_type=MediaType.HTML, status_code=303)
    async def deny(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        assisted_id: FromPath[int],
    ) -> Any:
        session = await current_session(request)
        assert session is not None
        try:
            await assisted.deny(assisted_id, decider_id=session.user_id, actor=actor_for(request))
        except Conflict as exc:
            return await self._page(request, access, status=409, error=str(exc))
        return Redirect("/assisted?notice=denied", status_code=303)

    @post("/{assisted_id:int}/end", media_type=MediaType.HTML, status_code=303)
    async def end(
        self,
        request: Request[Any, Any, Any],
        access: NamedDependency[Scope],
        assisted_id: FromPath[int],
        data: Form,
    ) -> Redirect:
        session = await current_session(request)
        assert session is not None
        ended = await assisted.end_by_customer(
            assisted_id, user_id=session.user_id, actor=actor_for(request)
        )
        notice = "ended" if ended else "already_over"
        target = _safe_next(_clip(data, "next", 600))
        if target is None or target.startswith("/assisted"):
            target = f"/assisted?notice={notice}"
        return Redirect(target, status_code=303)


@post(LEAVE_PATH, guards=[requires_assisted], media_type=MediaType.HTML, status_code=303)
async def leave_assisted(request: Request[Any, Any, Any]) -> Response:
    """The agent's "End session" button: the consent ends now, for good."""
    session = await current_session(request)
    assert session is not None
    assert session.assisted_id is not None
    assert session.agent_id is not None
    await assisted.end_by_agent(
        session.assisted_id, agent_id=session.agent_id, actor=actor_for(request)
    )
    return await leave_assisted_session(request, session, "ended")
