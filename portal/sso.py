"""Sign-in through a customer group's own OpenID provider (Authorization Code + PKCE).

``GET /sso/start?email=…`` finds the connection serving the email's domain, fetches the
provider's discovery document, creates ``state``, ``nonce`` and a PKCE verifier, keeps
them in Redis under the state (single use, 10 minutes) together with the hash of a random
browser-binding value that only this browser holds (a short-lived HttpOnly cookie), and
sends the browser to the provider's authorization endpoint with the exact redirect URI
``<BASE_URL>/sso/callback``.

It answers with a small page that continues at once (``<meta http-equiv="refresh">``,
plus a link) rather than a 302: our CSP has ``form-action 'self'``, and Chromium applies
it to every redirect after a form submission, so a form (the sign-in page's email step)
whose answer redirected to the provider's origin would be blocked.

``GET /sso/callback`` takes the state (deleting it), checks the browser binding, the
RFC 9207 ``iss`` parameter, exchanges the code with the verifier, validates the ID token
(``core.identity.oidc``) and lets ``core.identity.sso.complete_login`` decide. Every
refusal is audited (``login.failed`` with a reason code), shows a clear page (400/403)
and creates no session.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, MediaType, Request, get
from litestar.response import Redirect, Response, Template

from core.audit.log import Actor
from core.identity import oidc
from core.identity.services import normalize_email
from core.identity.sso import (
    SsoRefused,
    complete_login,
    connection_for_email,
    login_connection,
    record_refusal,
)
from portal.auth import client_ip, current_session, sessions, set_session_cookie

STATE_TTL_SECONDS = 600
# Each start stores a flow in Redis for 10 minutes: at most this many per client address
# in that time (far above what a person needs; it bounds what a script can store).
STARTS_PER_ADDRESS = 300
_STATE_PREFIX = "ll:sso:state:"
_STARTS_PREFIX = "ll:sso:starts:"
_EMAIL_MAX = 254


def binding_cookie_name(secure: bool) -> str:
    return "__Host-ll_sso" if secure else "ll_sso"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the dashboard."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target[:500]
    return "/"


def _actor(request: Request[Any, Any, Any]) -> Actor:
    return Actor(
        type="anonymous",
        id="",
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", "")[:300],
    )


def redirect_uri(request: Request[Any, Any, Any]) -> str:
    return request.app.state.settings.base_url + "/sso/callback"


def _refused(request: Request[Any, Any, Any], refused: SsoRefused) -> Template:
    return Template(
        "sso/error.html",
        context={
            "user": request.state.get("session"),
            "title": "Sign-in failed",
            "message": refused.message,
            "reason": refused.reason,
        },
        status_code=refused.status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store"},
    )


async def _refuse(
    request: Request[Any, Any, Any],
    reason: str,
    *,
    connection_id: int | None = None,
    detail: str = "",
    data: dict[str, Any] | None = None,
) -> Template:
    refused = SsoRefused(reason, detail)
    payload = dict(data or {})
    if detail:
        payload["detail"] = detail[:200]
    await record_refusal(reason, _actor(request), connection_id=connection_id, data=payload)
    return _refused(request, refused)


class SsoController(Controller):
    path = "/sso"

    @get("/start", name="sso_start", media_type=MediaType.HTML)
    async def start(self, request: Request[Any, Any, Any]) -> Response[Any]:
        query = request.query_params
        email = normalize_email((query.get("email") or "")[: _EMAIL_MAX + 1])
        target = _safe_next(query.get("next"))
        await current_session(request)  # for the page header
        if not email:
            return Template(
                "sso/start.html",
                context={
                    "user": request.state.get("session"),
                    "email": "",
                    "error": "",
                    "next": target,
                },
                media_type=MediaType.HTML,
            )
        if len(email) > _EMAIL_MAX or "@" not in email:
            return Template(
                "sso/start.html",
                context={
                    "user": request.state.get("session"),
                    "email": email[:_EMAIL_MAX],
                    "error": "Enter a valid email address.",
                    "next": target,
                },
                status_code=400,
                media_type=MediaType.HTML,
            )
        ref = await connection_for_email(email)
        if ref is None:
            return Template(
                "sso/start.html",
                context={
                    "user": request.state.get("session"),
                    "email": email,
                    "error": "Sign-in with a company account is not set up for that email "
                    "address. Sign in with your password instead.",
                    "next": target,
                },
                status_code=404,
                media_type=MediaType.HTML,
            )
        if not await _within_start_budget(request):
            return Template(
                "sso/start.html",
                context={
                    "user": request.state.get("session"),
                    "email": email,
                    "error": "Too many sign-in attempts from your network. Wait a few "
                    "minutes and try again.",
                    "next": target,
                },
                status_code=429,
                media_type=MediaType.HTML,
                headers={"Retry-After": str(STATE_TTL_SECONDS)},
            )
        connection = await login_connection(ref.id)
        if connection is None or not connection.client_secret:
            return await _refuse(
                request,
                "discovery_failed",
                connection_id=ref.id,
                detail="connection has no usable client secret",
            )
        try:
            metadata = await oidc.discover(connection.issuer)
            auth = oidc.authorization_request(
                metadata,
                client_id=connection.client_id,
                redirect_uri=redirect_uri(request),
                scope=metadata.scope_for(connection.role_claim),
                login_hint=email,
            )
        except oidc.OidcError as exc:
            return await _refuse(request, exc.reason, connection_id=ref.id, detail=exc.detail)

        secure = request.app.state.cookie_secure
        cookie_name = binding_cookie_name(secure)
        binding = request.cookies.get(cookie_name) or ""
        if not (40 <= len(binding) <= 64):
            binding = secrets.token_urlsafe(32)
        flow = {
            "connection_id": connection.id,
            "issuer": connection.issuer,
            "nonce": auth.nonce,
            "verifier": auth.code_verifier,
            "binding": _digest(binding),
            "redirect_uri": redirect_uri(request),
            "next": target,
            "created_at": time.time(),
        }
        await request.app.state.redis.set(
            _STATE_PREFIX + _digest(auth.state), json.dumps(flow), ex=STATE_TTL_SECONDS, nx=True
        )
        response = Template(
            "sso/continue.html",
            context={
                "user": request.state.get("session"),
                "url": auth.url,
                "provider": urlsplit(metadata.authorization_endpoint).netloc,
            },
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store"},
        )
        response.set_cookie(
            key=cookie_name,
            value=binding,
            path="/",
            max_age=STATE_TTL_SECONDS,
            secure=secure,
            httponly=True,
            samesite="lax",
        )
        return response

    @get("/callback", name="sso_callback", media_type=MediaType.HTML)
    async def callback(self, request: Request[Any, Any, Any]) -> Response[Any]:
        query = request.query_params
        state = (query.get("state") or "")[:256]
        code = (query.get("code") or "")[:4096]
        iss = query.get("iss")
        error = (query.get("error") or "")[:100]
        await current_session(request)
        if not state:
            return await _refuse(request, "state_missing")
        raw = await request.app.state.redis.getdel(_STATE_PREFIX + _digest(state))
        if raw is None:
            return await _refuse(request, "state_unknown")
        flow = json.loads(raw)
        connection_id = int(flow["connection_id"])
        issuer = flow["issuer"]
        binding = request.cookies.get(binding_cookie_name(request.app.state.cookie_secure)) or ""
        if not binding or not secrets.compare_digest(_digest(binding), flow["binding"]):
            return await _refuse(request, "state_other_browser", connection_id=connection_id)
        connection = await login_connection(connection_id)
        if connection is None or connection.issuer != issuer:
            return await _refuse(request, "connection_changed", connection_id=connection_id)
        if not connection.enabled:
            return await _refuse(request, "connection_disabled", connection_id=connection_id)
        try:
            metadata = await oidc.discover(issuer)
        except oidc.OidcError as exc:
            return await _refuse(
                request, exc.reason, connection_id=connection_id, detail=exc.detail
            )
        # RFC 9207: the response says which provider sent it; it must be ours.
        if iss is not None and iss != issuer:
            return await _refuse(
                request,
                "issuer_mismatch",
                connection_id=connection_id,
                data={"expected": issuer, "received": iss[:500]},
            )
        if iss is None and metadata.iss_parameter_supported:
            return await _refuse(request, "issuer_missing", connection_id=connection_id)
        if error:
            return await _refuse(
                request,
                "provider_error",
                connection_id=connection_id,
                detail=f"{error}: {(query.get('error_description') or '')[:150]}",
                data={"error": error},
            )
        if not code:
            return await _refuse(request, "code_missing", connection_id=connection_id)
        try:
            token = await oidc.exchange_code(
                metadata,
                client_id=connection.client_id,
                client_secret=connection.client_secret,
                code=code,
                redirect_uri=flow["redirect_uri"],
                code_verifier=flow["verifier"],
            )
            claims = await _validated_claims(metadata, connection.client_id, flow, token)
        except oidc.OidcError as exc:
            return await _refuse(
                request, exc.reason, connection_id=connection_id, detail=exc.detail
            )
        try:
            login = await complete_login(connection_id, issuer, claims, _actor(request))
        except SsoRefused as refused:  # already audited
            return _refused(request, refused)

        store = sessions(request)
        old = request.state.get("session")
        if old is not None:
            await store.delete(old.sid)
        session = await store.create(
            "customer",
            login.who.id,
            login.who.name,
            client_ip(request),
            request.headers.get("user-agent", ""),
            auth_method="sso",
        )
        response = Redirect(_safe_next(flow.get("next")), status_code=303)
        set_session_cookie(request, response, session.sid)
        response.delete_cookie(binding_cookie_name(request.app.state.cookie_secure), path="/")
        response.headers["Cache-Control"] = "no-store"
        return response


async def _within_start_budget(request: Request[Any, Any, Any]) -> bool:
    key = _STARTS_PREFIX + _digest(client_ip(request))
    redis = request.app.state.redis
    count = await redis.incr(key)
    if count == 1:
        await redis.expire(key, STATE_TTL_SECONDS)
    return int(count) <= STARTS_PER_ADDRESS


async def _validated_claims(
    metadata: oidc.ProviderMetadata, client_id: str, flow: dict[str, Any], token: dict[str, Any]
) -> dict[str, Any]:
    """Validate the ID token; on a key the cached JWKS lacks, fetch the keys once more
    (providers rotate keys)."""
    for force in (False, True):
        jwks = await oidc.fetch_jwks(metadata, force=force)
        try:
            return oidc.validate_id_token(
                token["id_token"],
                jwks,
                issuer=flow["issuer"],
                client_id=client_id,
                nonce=flow["nonce"],
                algorithms=metadata.id_token_algorithms,
                access_token=token.get("access_token"),
            )
        except oidc.OidcError as exc:
            if exc.reason != "id_token_unknown_key" or force:
                raise
    raise oidc.OidcError("id_token_signature")  # unreachable
