"""Password reset by email: ``/password/forgot`` mails a single-use link valid for an
hour; ``/password/reset/{token}`` sets a new password, uses the token up and signs out
every session of the account.

The answer to ``/password/forgot`` is the same whether or not the address has an
account, and the mail is sent after the response (a background task), so the timing
does not tell either.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from litestar import Controller, MediaType, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Template
from litestar.template import TemplateEngineProtocol

from core.errors import ValidationFailed
from core.identity.mfa import object_type
from core.identity.security import (
    RESET_TTL,
    ResetLinkInvalid,
    ResetRequest,
    audit_event,
    request_password_reset,
    reset_password,
    reset_token_valid,
)
from core.identity.services import normalize_email
from core.identity.sso import connection_for_email
from core.notifications.mailer import mailer
from portal.auth import actor_for, client_ip, current_session, requires_own_session, sessions
from portal.auth_routes import clean_email
from portal.throttle import throttle

log = structlog.get_logger("ledgerline.password_reset")

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def _looks_like_email(email: str) -> bool:
    local, _, domain = email.partition("@")
    return bool(local) and "." in domain and " " not in email and len(email) <= 254


async def _send_reset_mail(
    engine: TemplateEngineProtocol[Any, Any], base_url: str, reset: ResetRequest
) -> None:
    context = {
        "name": reset.name,
        "link": f"{base_url}/password/reset/{reset.token}",
        "minutes": int(RESET_TTL.total_seconds() // 60),
    }
    try:
        text = engine.get_template("emails/password_reset.txt").render(**context)
        html = engine.get_template("emails/password_reset.html").render(**context)
        await mailer().send(reset.email, "Reset your Ledgerline password", text, html)
    except Exception:  # the user already has their answer; log for the operators
        log.exception("password reset email failed")


class PasswordResetController(Controller):
    path = "/password"
    guards = [requires_own_session]  # never in an assisted session

    @get("/forgot", name="password_forgot", media_type=MediaType.HTML)
    async def forgot_form(self) -> Template:
        return Template("auth/forgot.html", context={"email": "", "errors": {}, "sent": False})

    @post("/forgot", status_code=200, media_type=MediaType.HTML)
    async def forgot(self, request: Request[Any, Any, Any], data: Form) -> Template:
        email = normalize_email(clean_email(data.get("email")))
        if not _looks_like_email(email):
            return Template(
                "auth/forgot.html",
                context={
                    "email": email,
                    "errors": {"email": "Enter the email address of your account."},
                    "sent": False,
                },
                status_code=400,
            )
        background = None
        connection = await connection_for_email(email)
        sso_only = connection is not None and connection.sso_required
        if not sso_only and await throttle(request).allow_reset_mail(email, client_ip(request)):
            reset = await request_password_reset(email, actor_for(request))
            if reset is not None:
                background = BackgroundTask(
                    _send_reset_mail,
                    request.app.template_engine,
                    request.app.state.settings.base_url,
                    reset,
                )
        return Template(
            "auth/forgot.html",
            context={"email": email, "errors": {}, "sent": True},
            background=background,
        )

    @get("/reset/{token:str}", name="password_reset", media_type=MediaType.HTML)
    async def reset_form(self, token: FromPath[str]) -> Template:
        if not await reset_token_valid(token):
            return Template(
                "auth/reset.html", context={"state": "invalid", "errors": {}}, status_code=400
            )
        return Template(
            "auth/reset.html",
            context={"state": "form", "token": token, "errors": {}},
            headers={"Cache-Control": "no-store"},
        )

    @post("/reset/{token:str}", status_code=200, media_type=MediaType.HTML)
    async def reset(
        self, request: Request[Any, Any, Any], token: FromPath[str], data: Form
    ) -> Template:
        try:
            done = await reset_password(
                token,
                (data.get("new_password") or "")[:2048],
                (data.get("confirm_password") or "")[:2048],
                actor_for(request),
            )
        except ValidationFailed as exc:
            return Template(
                "auth/reset.html",
                context={"state": "form", "token": token, "errors": exc.errors},
                status_code=400,
            )
        except ResetLinkInvalid:
            return Template(
                "auth/reset.html", context={"state": "invalid", "errors": {}}, status_code=400
            )
        # Whoever held a session (perhaps the reason for the reset) is signed out.
        ended = await sessions(request).delete_all_for(done.kind, done.principal_id)
        await throttle(request).unlock(done.email)
        await audit_event(
            actor_for(request),
            "sessions.signed_out_all",
            object_type(done.kind),
            done.principal_id,
            count=ended,
            reason="password_reset",
        )
        response = Template("auth/reset.html", context={"state": "done", "errors": {}})
        cookie = request.app.state.session_cookie
        if request.cookies.get(cookie) and await current_session(request) is None:
            response.delete_cookie(cookie, path="/")
        return response
