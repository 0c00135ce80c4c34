"""Sign-in and sign-out: email + password, then the second factor when due.

``POST /login`` routes an email whose domain belongs to an SSO connection to
``/sso/start`` (always when the organization requires SSO, and when the password was
left empty); otherwise it checks the password. A user with a confirmed TOTP factor
gets a session at stage "mfa" and finishes at ``/login/mfa``; staff without a factor
get stage "enroll" and can only reach the MFA set-up until it is confirmed. The session
id changes at each step (a new session at the password, a rotation at the code).

Failures are counted per account and per address (``portal.throttle``): five in a row
lock the account for 15 minutes, and many from one address refuse it for a while.
"""

from __future__ import annotations

import time
import unicodedata
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, MediaType, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from core.identity import mfa
from core.identity.security import account_email, refuse_attempt
from core.identity.services import authenticate
from core.identity.sso import connection_for_email, sso_required_for_email
from portal.auth import actor_for, client_ip, current_session, sessions, set_session_cookie
from portal.sessions import SessionData
from portal.throttle import note_failure, throttle

NO_MATCH = "That email and password do not match an active account."
LOCKED = f"{NO_MATCH} Too many attempts: try again later."
ADDRESS_REFUSED = "Too many sign-in attempts from your network. Try again later."

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def clean_email(raw: str | None) -> str:
    """The typed address, trimmed; "" when it holds control characters or unpaired
    surrogates (PostgreSQL refuses NUL in text, and no address contains them)."""
    email = (raw or "").strip()[:254]
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in email):
        return ""
    return email


def _safe_next(target: str | None, default: str) -> str:
    """Only same-site relative paths; anything else goes to the default page."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default


def home_for(kind: str) -> str:
    return "/staff" if kind == "staff" else "/"


def where_to_continue(session: SessionData | None) -> str:
    if session is None:
        return "/login"
    if session.stage == "mfa":
        return "/login/mfa"
    if session.stage == "enroll":
        return "/account/mfa"
    return home_for(session.kind)


def _login_page(
    target: str,
    email: str = "",
    error: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    return Template(
        "login.html",
        context={"next": target, "email": email, "error": error, "errors": errors or {}},
        status_code=status,
        media_type=MediaType.HTML,
    )


def _signed_out(response: Any, request: Request[Any, Any, Any]) -> Any:
    response.delete_cookie(request.app.state.session_cookie, path="/")
    return response


class AuthController(Controller):
    @get("/login", name="login", media_type=MediaType.HTML)
    async def login_form(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Any:
        session = await current_session(request)
        if session is not None and session.full:
            return Redirect(_safe_next(next, home_for(session.kind)))
        return _login_page(_safe_next(next, ""))

    @post("/login", status_code=303, media_type=MediaType.HTML)
    async def login(self, request: Request[Any, Any, Any], data: Form) -> Any:
        raw_email = (data.get("email") or "").strip()
        email = clean_email(raw_email)
        password = (data.get("password") or "")[:1024]
        target = _safe_next(data.get("next"), "")
        if not email:
            message = "Enter a valid email address." if raw_email else "Enter your email address."
            return _login_page(target, errors={"email": message}, status=400)
        # SSO: required for this person (their domain's or their group's connection), or
        # offered when their domain has a connection and they left the password empty.
        required = await sso_required_for_email(email)
        offered = required or await connection_for_email(email)
        if required is not None or (offered is not None and not password):
            return Redirect(f"/sso/start?email={quote(email)}", status_code=303)
        if not password:
            return _login_page(
                target, email, errors={"password": "Enter your password."}, status=400
            )
        limiter = throttle(request)
        if await limiter.ip_refused(client_ip(request)):
            await refuse_attempt(email, "address_throttled", actor_for(request))
            return _login_page(target, email, ADDRESS_REFUSED, status=429)
        if await limiter.locked(email):
            await refuse_attempt(email, "locked", actor_for(request))
            await note_failure(request, email, toward_lock=False)
            return _login_page(target, email, LOCKED, status=429)
        who = await authenticate(email, password, actor_for(request))
        if who is None:
            assessment = await note_failure(request, email)
            if assessment.lock:
                return _login_page(target, email, LOCKED, status=429)
            return _login_page(target, email, NO_MATCH, status=400)
        await limiter.success(email)
        store = sessions(request)
        old = await current_session(request)
        if old is not None:
            await store.delete(old.sid)
        stage = {"totp": "mfa", "enroll": "enroll"}.get(who.second_factor, "full")
        session = await store.create(
            who.kind,
            who.id,
            who.name,
            client_ip(request),
            request.headers.get("user-agent", ""),
            stage=stage,
            auth_method="password",
        )
        if stage == "mfa":
            location = "/login/mfa" + (f"?next={quote(target)}" if target else "")
        elif stage == "enroll":
            location = "/account/mfa"
        else:
            location = _safe_next(target, home_for(who.kind))
        response = Redirect(location, status_code=303)
        set_session_cookie(request, response, session.sid)
        return response

    @get("/login/continue", name="login_continue")
    async def continue_sign_in(self, request: Request[Any, Any, Any]) -> Redirect:
        return Redirect(where_to_continue(await current_session(request)))

    @get("/login/mfa", name="login_mfa", media_type=MediaType.HTML)
    async def mfa_form(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Any:
        session = await current_session(request)
        if session is None or session.stage != "mfa":
            return Redirect(where_to_continue(session))
        return Template(
            "auth/mfa.html", context={"next": _safe_next(next, ""), "errors": {}, "code": ""}
        )

    @post("/login/mfa", status_code=303, media_type=MediaType.HTML)
    async def mfa_verify(self, request: Request[Any, Any, Any], data: Form) -> Any:
        session = await current_session(request)
        if session is None or session.stage != "mfa":
            return Redirect(where_to_continue(session), status_code=303)
        target = _safe_next(data.get("next"), "")
        code = (data.get("code") or "").strip()[:64]

        def page(error: str, status: int = 400) -> Template:
            return Template(
                "auth/mfa.html",
                context={"next": target, "errors": {"code": error}, "code": ""},
                status_code=status,
            )

        if not code:
            return page("Enter the 6-digit code from your app, or a recovery code.")
        email = await account_email(session.kind, session.user_id)
        limiter = throttle(request)
        store = sessions(request)
        if await limiter.locked(email):
            await store.delete(session.sid)
            return _signed_out(_login_page(target, email, LOCKED, status=429), request)
        result = await mfa.verify_second_factor(
            session.kind, session.user_id, code, actor_for(request), purpose="login"
        )
        if not result.ok:
            assessment = await note_failure(request, email, mfa=True)
            if assessment.lock:
                await store.delete(session.sid)
                return _signed_out(_login_page(target, email, LOCKED, status=429), request)
            return page("That code is not valid, or it was already used. Try the next one.")
        await limiter.success(email)
        full = await store.rotate(session, stage="full", reauth_at=time.time())
        location = _safe_next(target, home_for(full.kind))
        if result.method == "recovery_code":
            location = "/account?notice=recovery-code-used"
        response = Redirect(location, status_code=303)
        set_session_cookie(request, response, full.sid)
        return response

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        session = await current_session(request)
        if session is not None:
            await sessions(request).delete(session.sid)
        return _signed_out(Redirect("/login", status_code=303), request)
