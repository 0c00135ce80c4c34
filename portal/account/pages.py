"""``/account``: profile, password change, two-step verification, active sessions, and
the re-authentication that sensitive changes need.

Changing the password, the email address or anything about MFA needs a proof of
identity from the last five minutes (``SessionData.fresh_auth()``); otherwise the user
is sent to ``/account/reauth``. None of this is reachable in an assisted session: a support agent
never sees or changes credentials.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Controller, MediaType, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Response, Template

from core import crypto
from core.errors import Conflict, ValidationFailed
from core.identity import mfa
from core.identity.security import (
    EMAIL_CHANGE_TTL,
    SsoManaged,
    account_email,
    audit_event,
    change_password,
    check_password,
    request_email_change,
    sso_managed,
)
from portal.account.email_change import pending_changes, send_email_change_mails
from portal.account.qr import grouped, qr_data_uri
from portal.auth import (
    SignInIncomplete,
    actor_for,
    current_session,
    requires_own_session,
    sessions,
    set_session_cookie,
)
from portal.auth_routes import LOCKED, home_for
from portal.sessions import SessionData
from portal.throttle import note_failure, throttle

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]

NOTICES = {
    "password-changed": "Your password has been changed. Your other sessions were signed out.",
    "others-ended": "Your other sessions have been signed out.",
    "session-ended": "That session has been signed out.",
    "session-gone": "That session had already ended.",
    "mfa-off": "Two-step verification is turned off.",
    "recovery-code-used": "You signed in with a recovery code. Each code works only once.",
    "reauth-ok": "Thanks, you can make changes for the next five minutes.",
    "email-sent": (
        "We sent a confirmation link to your new email address. Your address changes when "
        f"you open it (within {int(EMAIL_CHANGE_TTL.total_seconds() // 60)} minutes)."
    ),
}
SSO_MANAGED = (
    "Your company's identity provider manages your email address: ask your administrator "
    "to change it there."
)


async def _account_session(connection: ASGIConnection, allow_enroll: bool) -> SessionData:
    session = await current_session(connection)
    if session is None:
        raise NotAuthorizedException("Please sign in.")
    if session.stage == "mfa" or (session.stage == "enroll" and not allow_enroll):
        raise SignInIncomplete("Finish signing in.")
    if session.assisted:
        raise PermissionDeniedException(
            "Account security settings are not available in an assisted session."
        )
    return session


async def requires_account(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    await _account_session(connection, allow_enroll=False)


async def requires_account_or_enrollment(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Also lets in staff who must set up MFA before anything else."""
    await _account_session(connection, allow_enroll=True)


def session_handle(sid: str) -> str:
    """What the page shows for a session: never the id itself (a bearer credential)."""
    return hashlib.sha256(b"ledgerline-session:" + sid.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class SessionRow:
    handle: str
    created: str
    last_seen: str
    ip: str
    user_agent: str
    current: bool
    assisted_by: str


def _replacement_key(session: SessionData) -> str:
    return f"ll:mfa-replacement:{session.kind}:{session.user_id}"


async def _replacement_secret(request: Request[Any, Any, Any], session: SessionData) -> str | None:
    """The new device's secret while a move to it is in progress (encrypted in Redis
    for 15 minutes: the factor table keeps one row per user, the current one)."""
    raw = await request.app.state.redis.get(_replacement_key(session))
    if raw is None:
        return None
    try:
        return crypto.box().decrypt(raw.decode() if isinstance(raw, bytes) else raw)
    except crypto.DecryptionError:
        return None


async def _keep_replacement_secret(
    request: Request[Any, Any, Any], session: SessionData, secret: str
) -> None:
    await request.app.state.redis.set(
        _replacement_key(session), crypto.box().encrypt(secret), ex=15 * 60
    )


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y %H:%M UTC")


async def _session(request: Request[Any, Any, Any]) -> SessionData:
    session = await current_session(request)
    assert session is not None  # the guard let the request in
    return session


def _reauth(next_path: str) -> Redirect:
    return Redirect(f"/account/reauth?next={quote(next_path)}", status_code=303)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/account"


class AccountController(Controller):
    path = "/account"
    guards = [requires_own_session]  # never in an assisted session

    # ------------------------------------------------------------ overview + password

    async def _home(
        self,
        request: Request[Any, Any, Any],
        *,
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        notice: str = "",
        status: int = 200,
    ) -> Template:
        session = await _session(request)
        managed = await sso_managed(session.kind, session.user_id)
        rows = [
            SessionRow(
                handle=session_handle(s.sid),
                created=_when(s.created_at),
                last_seen=_when(s.last_seen or s.created_at),
                ip=s.ip or "unknown",
                user_agent=s.user_agent or "unknown",
                current=s.sid == session.sid,
                assisted_by=s.agent_name if s.assisted else "",
            )
            for s in await sessions(request).list_for(session.kind, session.user_id)
        ]
        return Template(
            "account/home.html",
            context={
                "user": session,
                "nav": "account",
                "email": await account_email(session.kind, session.user_id),
                "mfa": await mfa.status(session.kind, session.user_id),
                "sessions": rows,
                "others": sum(1 for r in rows if not r.current),
                "fresh": session.fresh_auth(),
                "sso_managed": managed,
                "sso_managed_text": SSO_MANAGED,
                "pending_email": None
                if managed
                else await pending_changes(request).pending_for(session.kind, session.user_id),
                "errors": errors or {},
                "values": values or {},
                "notice": notice,
            },
            status_code=status,
            media_type=MediaType.HTML,
        )

    @get("/", name="account", guards=[requires_account])
    async def home(
        self, request: Request[Any, Any, Any], notice: FromQuery[str | None] = None
    ) -> Template:
        return await self._home(request, notice=NOTICES.get(notice or "", ""))

    @post("/password", guards=[requires_account], status_code=303)
    async def password(self, request: Request[Any, Any, Any], data: Form) -> Any:
        session = await _session(request)
        if not session.fresh_auth():
            return _reauth("/account#password")
        email = await account_email(session.kind, session.user_id)
        limiter = throttle(request)
        if await limiter.locked(email):
            return await self._home(
                request,
                errors={"current_password": "Too many attempts: try again later."},
                status=429,
            )
        try:
            await change_password(
                session.kind,
                session.user_id,
                (data.get("current_password") or "")[:1024],
                (data.get("new_password") or "")[:2048],
                (data.get("confirm_password") or "")[:2048],
                actor_for(request),
            )
        except ValidationFailed as exc:
            if "current_password" in exc.errors:
                assessment = await note_failure(request, email)
                if assessment.lock:
                    exc.errors["current_password"] = "Too many attempts: try again later."
            return await self._home(request, errors=exc.errors, status=400)
        await limiter.success(email)
        store = sessions(request)
        ended = await store.delete_all_for(session.kind, session.user_id, keep=session.sid)
        rotated = await store.rotate(session, reauth_at=time.time())
        await audit_event(
            actor_for(request),
            "sessions.signed_out_others",
            mfa.object_type(session.kind),
            session.user_id,
            count=ended,
            reason="password_changed",
        )
        response = Redirect("/account?notice=password-changed", status_code=303)
        set_session_cookie(request, response, rotated.sid)
        return response

    # ------------------------------------------------------------ email address

    @post("/email", guards=[requires_account], status_code=303)
    async def email(self, request: Request[Any, Any, Any], data: Form) -> Any:
        """Check the request and mail a confirmation link to the new address (and a
        notice to the old one); the address changes when the link is used."""
        session = await _session(request)
        if not session.fresh_auth():
            return _reauth("/account#email")
        new_email = (data.get("new_email") or "").strip()[:320]
        values = {"new_email": new_email}
        email = await account_email(session.kind, session.user_id)
        limiter = throttle(request)
        if await limiter.locked(email):
            return await self._home(
                request,
                errors={"email_password": "Too many attempts: try again later."},
                values=values,
                status=429,
            )
        store = pending_changes(request)
        if not await store.allow(session.kind, session.user_id):
            return await self._home(
                request,
                errors={"new_email": "Too many change requests: try again in an hour."},
                values=values,
                status=429,
            )
        try:
            change = await request_email_change(
                session.kind,
                session.user_id,
                (data.get("email_password") or "")[:1024],
                new_email,
                actor_for(request),
            )
        except SsoManaged:
            raise PermissionDeniedException(SSO_MANAGED) from None
        except ValidationFailed as exc:
            # The form's password field has its own name (the password form's is taken).
            errors = {
                ("email_password" if k == "current_password" else k): v
                for k, v in exc.errors.items()
            }
            if "email_password" in errors:
                assessment = await note_failure(request, email)
                if assessment.lock:
                    errors["email_password"] = "Too many attempts: try again later."
            return await self._home(request, errors=errors, values=values, status=400)
        await limiter.success(email)
        token = await store.put(change)
        return Redirect(
            "/account?notice=email-sent",
            status_code=303,
            background=BackgroundTask(
                send_email_change_mails,
                request.app.template_engine,
                request.app.state.settings.base_url,
                change,
                token,
            ),
        )

    # ------------------------------------------------------------ sessions

    @post("/sessions/end", guards=[requires_account], status_code=303)
    async def end_session(self, request: Request[Any, Any, Any], data: Form) -> Redirect:
        session = await _session(request)
        handle = (data.get("session") or "")[:64]
        store = sessions(request)
        for other in await store.list_for(session.kind, session.user_id):
            if session_handle(other.sid) != handle:
                continue
            await store.delete(other.sid)
            await audit_event(
                actor_for(request),
                "session.signed_out",
                mfa.object_type(session.kind),
                session.user_id,
                ip=other.ip,
                user_agent=other.user_agent,
                current=other.sid == session.sid,
            )
            if other.sid == session.sid:
                response = Redirect("/login", status_code=303)
                response.delete_cookie(request.app.state.session_cookie, path="/")
                return response
            return Redirect("/account?notice=session-ended", status_code=303)
        return Redirect("/account?notice=session-gone", status_code=303)

    @post("/sessions/end-others", guards=[requires_account], status_code=303)
    async def end_others(self, request: Request[Any, Any, Any]) -> Redirect:
        session = await _session(request)
        ended = await sessions(request).delete_all_for(
            session.kind, session.user_id, keep=session.sid
        )
        await audit_event(
            actor_for(request),
            "sessions.signed_out_others",
            mfa.object_type(session.kind),
            session.user_id,
            count=ended,
        )
        return Redirect("/account?notice=others-ended", status_code=303)

    # ------------------------------------------------------------ two-step verification

    async def _enrollment(
        self,
        request: Request[Any, Any, Any],
        session: SessionData,
        *,
        replace: bool = False,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        if replace:
            enrollment = await mfa.replacement(
                session.kind, session.user_id, await _replacement_secret(request, session)
            )
            await _keep_replacement_secret(request, session, enrollment.secret)
        else:
            enrollment = await mfa.pending_enrollment(session.kind, session.user_id)
        return Template(
            "account/mfa.html",
            context={
                "user": session if session.full else None,
                "nav": "account",
                "enrolling": True,
                "replace": replace,
                "forced": session.stage == "enroll",
                "qr": qr_data_uri(enrollment.uri),
                "secret": grouped(enrollment.secret),
                "errors": errors or {},
            },
            status_code=status,
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )

    @get("/mfa", name="account_mfa", guards=[requires_account_or_enrollment])
    async def mfa_page(
        self, request: Request[Any, Any, Any], replace: FromQuery[bool] = False
    ) -> Any:
        session = await _session(request)
        state = await mfa.status(session.kind, session.user_id)
        if state.confirmed and not replace:
            return Template(
                "account/mfa.html",
                context={
                    "user": session,
                    "nav": "account",
                    "enrolling": False,
                    "mfa": state,
                    "can_disable": session.kind == "customer",
                    "fresh": session.fresh_auth(),
                },
                media_type=MediaType.HTML,
            )
        if not session.fresh_auth():
            return _reauth("/account/mfa" + ("?replace=true" if state.confirmed else ""))
        return await self._enrollment(request, session, replace=state.confirmed)

    @post("/mfa/confirm", guards=[requires_account_or_enrollment], status_code=200)
    async def mfa_confirm(self, request: Request[Any, Any, Any], data: Form) -> Any:
        session = await _session(request)
        replace = data.get("replace") == "true"
        again = "/account/mfa" + ("?replace=true" if replace else "")
        if not session.fresh_auth():
            return _reauth(again)
        code = (data.get("code") or "").strip()[:64]
        try:
            if not code:
                raise ValidationFailed({"code": "Enter the 6-digit code from your app."})
            if replace:
                secret = await _replacement_secret(request, session)
                if secret is None:  # the set-up expired: start again with a new key
                    return Redirect(again, status_code=303)
                codes = await mfa.confirm_replacement(
                    session.kind, session.user_id, secret, code, actor_for(request)
                )
                await request.app.state.redis.delete(_replacement_key(session))
            else:
                codes = await mfa.confirm_enrollment(
                    session.kind,
                    session.user_id,
                    code,
                    actor_for(request),
                    completes_sign_in=session.stage == "enroll",
                )
        except ValidationFailed as exc:
            return await self._enrollment(
                request, session, replace=replace, errors=exc.errors, status=400
            )
        except Conflict:
            return Redirect("/account/mfa", status_code=303)
        # A privilege change: the session gets a new id (and, for staff who had to
        # enroll, becomes a full session).
        rotated = await sessions(request).rotate(session, stage="full", reauth_at=time.time())
        after = home_for(rotated.kind) if session.stage == "enroll" else "/account"
        response = self._codes_page(rotated, codes, enrolled=True, continue_to=after)
        set_session_cookie(request, response, rotated.sid)
        return response

    def _codes_page(
        self,
        session: SessionData,
        codes: list[str],
        enrolled: bool,
        continue_to: str = "/account/mfa",
    ) -> Template:
        return Template(
            "account/recovery_codes.html",
            context={
                "user": session,
                "nav": "account",
                "codes": codes,
                "enrolled": enrolled,
                "continue_to": continue_to,
            },
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )

    @post("/mfa/recovery-codes", guards=[requires_account], status_code=200)
    async def new_recovery_codes(self, request: Request[Any, Any, Any]) -> Any:
        session = await _session(request)
        if not session.fresh_auth():
            return _reauth("/account/mfa")
        try:
            codes = await mfa.regenerate_recovery_codes(
                session.kind, session.user_id, actor_for(request)
            )
        except Conflict:
            return Redirect("/account/mfa", status_code=303)
        return self._codes_page(session, codes, enrolled=False)

    @post("/mfa/disable", guards=[requires_account], status_code=303)
    async def mfa_disable(self, request: Request[Any, Any, Any]) -> Redirect:
        session = await _session(request)
        if not session.fresh_auth():
            return _reauth("/account/mfa")
        await mfa.disable(session.kind, session.user_id, actor_for(request))
        rotated = await sessions(request).rotate(session)
        response = Redirect("/account?notice=mfa-off", status_code=303)
        set_session_cookie(request, response, rotated.sid)
        return response

    # ------------------------------------------------------------ re-authentication

    async def _reauth_page(
        self,
        session: SessionData,
        target: str,
        *,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        return Template(
            "account/reauth.html",
            context={
                "user": session if session.full else None,
                "nav": "account",
                "next": target,
                "has_totp": await mfa.has_confirmed_factor(session.kind, session.user_id),
                "errors": errors or {},
            },
            status_code=status,
            media_type=MediaType.HTML,
        )

    @get("/reauth", name="account_reauth", guards=[requires_account_or_enrollment])
    async def reauth_form(
        self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None
    ) -> Any:
        return await self._reauth_page(await _session(request), _safe_next(next))

    @post("/reauth", guards=[requires_account_or_enrollment], status_code=303)
    async def reauth(self, request: Request[Any, Any, Any], data: Form) -> Any:
        session = await _session(request)
        target = _safe_next(data.get("next"))
        password = (data.get("password") or "")[:1024]
        code = (data.get("code") or "").strip()[:64]
        if not password and not code:
            return await self._reauth_page(
                session,
                target,
                errors={"password": "Enter your password, or a code from your app."},
                status=400,
            )
        email = await account_email(session.kind, session.user_id)
        limiter = throttle(request)
        store = sessions(request)
        if await limiter.locked(email):
            return await self._locked_out(request, session)
        actor = actor_for(request)
        if password:
            ok = await check_password(session.kind, session.user_id, password, actor)
        else:
            check = await mfa.verify_second_factor(
                session.kind, session.user_id, code, actor, purpose="reauth"
            )
            ok = check.ok
        if not ok:
            assessment = await note_failure(request, email, mfa=not password)
            if assessment.lock:
                return await self._locked_out(request, session)
            field = "password" if password else "code"
            message = (
                "That password is not right."
                if password
                else "That code is not valid, or it was already used."
            )
            return await self._reauth_page(session, target, errors={field: message}, status=400)
        await limiter.success(email)
        await store.update(session, reauth_at=time.time())
        if target == "/account":
            target = "/account?notice=reauth-ok"
        return Redirect(target, status_code=303)

    async def _locked_out(self, request: Request[Any, Any, Any], session: SessionData) -> Response:
        """Too many failures while signed in: the session ends, as a stolen one would."""
        await sessions(request).delete(session.sid)
        response = Template(
            "login.html",
            context={"next": "", "email": "", "error": LOCKED, "errors": {}},
            status_code=429,
            media_type=MediaType.HTML,
        )
        response.delete_cookie(request.app.state.session_cookie, path="/")
        return response
