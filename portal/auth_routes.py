"""Sign-in and sign-out with a local password (SSO and MFA build on this)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from core.identity.services import authenticate
from portal.auth import actor_for, current_session, sessions, set_session_cookie


def _safe_next(target: str | None, default: str) -> str:
    """Only same-site relative paths; anything else goes to the default page."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default


class AuthController(Controller):
    @get("/login", name="login", media_type=MediaType.HTML)
    async def login_form(self, request: Request[Any, Any, Any], next: str | None = None) -> Any:
        session = await current_session(request)
        if session is not None:
            return Redirect(_safe_next(next, "/staff" if session.kind == "staff" else "/"))
        return Template("login.html", context={"next": next or "", "email": "", "error": ""})

    @post("/login", status_code=303, media_type=MediaType.HTML)
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Any:
        email = (data.get("email") or "").strip()[:254]
        password = (data.get("password") or "")[:1024]
        target = data.get("next") or ""
        if not email or not password:
            return Template(
                "login.html",
                context={"next": target, "email": email, "error": "Enter your email and password."},
                status_code=400,
            )
        who = await authenticate(email, password, actor_for(request))
        if who is None:
            return Template(
                "login.html",
                context={
                    "next": target,
                    "email": email,
                    "error": "That email and password do not match an active account.",
                },
                status_code=400,
            )
        store = sessions(request)
        old = await current_session(request)
        if old is not None:
            await store.delete(old.sid)
        client = request.client.host if request.client else ""
        session = await store.create(
            who.kind, who.id, who.name, client, request.headers.get("user-agent", "")
        )
        response = Redirect(
            _safe_next(target, "/staff" if who.kind == "staff" else "/"), status_code=303
        )
        set_session_cookie(request, response, session.sid)
        return response

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        session = await current_session(request)
        if session is not None:
            await sessions(request).delete(session.sid)
        response = Redirect("/login", status_code=303)
        response.delete_cookie(request.app.state.session_cookie, path="/")
        return response
