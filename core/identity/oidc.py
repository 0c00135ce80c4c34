"""OpenID Connect relying-party protocol pieces, framework-neutral.

Discovery (cached briefly), the authorization request with PKCE (S256), the code
exchange (authlib's ``AsyncOAuth2Client`` over httpx) and ID token validation (authlib's
OpenID ``CodeIDToken`` claims over a JWT verified by joserfc against the provider's
JWKS; authlib 1.6+ builds its own OpenID client on exactly these, and its older
``authlib.jose`` module is deprecated). Nothing here knows about HTTP servers, sessions
or the database: ``core.identity.sso`` decides who may sign in, the portal keeps the
per-login state.

Every failure is an ``OidcError`` with a short reason code (audited) and never leaks a
stack trace to a person.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)

with warnings.catch_warnings():
    # authlib's httpx integration announces a future move to "httpx2"; we use httpx.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

DISCOVERY_TTL_SECONDS = 300
HTTP_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 512 * 1024
# Clock skew allowed for exp/iat. Small: an ID token is used at once.
LEEWAY_SECONDS = 60
# Only asymmetric signatures: never "none", never a MAC keyed with the client secret.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")


class OidcError(Exception):
    """A step of the OpenID flow failed; ``reason`` is a stable code for the audit log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    iss_parameter_supported: bool
    token_auth_methods: tuple[str, ...]
    id_token_algorithms: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None

    def token_auth_method(self) -> str:
        """client_secret_basic unless the provider only offers client_secret_post."""
        methods = self.token_auth_methods or ("client_secret_basic",)
        if "client_secret_basic" in methods:
            return "client_secret_basic"
        if "client_secret_post" in methods:
            return "client_secret_post"
        raise OidcError("discovery_failed", "provider offers no client secret authentication")

    def scope_for(self, role_claim: str) -> str:
        """openid, plus email/profile and a scope named like the role claim (e.g. Okta's
        and Keycloak's ``groups``) when the provider lists them (or lists no scopes)."""
        wanted = ["openid", "email", "profile"]
        if role_claim and role_claim not in wanted:
            wanted.append(role_claim)
        if self.scopes_supported is None:
            return " ".join(wanted[:3])
        return " ".join(s for s in wanted if s == "openid" or s in self.scopes_supported)


def is_local_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}


def _same_transport(issuer: str, url: str) -> bool:
    """Endpoints are https, or plain http on a loopback issuer (development and tests)."""
    scheme = urlsplit(url).scheme
    return scheme == "https" or (scheme == "http" and is_local_http(issuer) and is_local_http(url))


_discovery_cache: dict[str, tuple[float, ProviderMetadata]] = {}
_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}


async def _get_json(url: str, reason: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False) as c:
            response = await c.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OidcError(reason, f"{url} unreachable ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise OidcError(reason, f"{url} answered {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise OidcError(reason, f"{url} answered a document too large")
    try:
        document = response.json()
    except ValueError:
        raise OidcError(reason, f"{url} did not answer JSON") from None
    if not isinstance(document, dict):
        raise OidcError(reason, f"{url} did not answer a JSON object")
    return document


def parse_metadata(issuer: str, document: dict[str, Any]) -> ProviderMetadata:
    """Check a discovery document (OpenID Connect Discovery 1.0, section 4.3: its issuer
    must be exactly the one configured)."""
    if document.get("issuer") != issuer:
        raise OidcError("discovery_failed", "the discovery document names another issuer")
    endpoints = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not _same_transport(issuer, value):
            raise OidcError("discovery_failed", f"missing or insecure {name}")
        endpoints[name] = value
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise OidcError("discovery_failed", "the provider does not support PKCE S256")
    scopes = document.get("scopes_supported")

    def strings(value: Any) -> tuple[str, ...]:
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        jwks_uri=endpoints["jwks_uri"],
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
        is True,
        token_auth_methods=strings(document.get("token_endpoint_auth_methods_supported")),
        id_token_algorithms=strings(document.get("id_token_signing_alg_values_supported"))
        or ("RS256",),
        scopes_supported=strings(scopes) if isinstance(scopes, list) else None,
    )


async def discover(issuer: str) -> ProviderMetadata:
    """The provider's metadata from ``<issuer>/.well-known/openid-configuration``, cached
    for a few minutes per process (failures are not cached)."""
    cached = _discovery_cache.get(issuer)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    metadata = parse_metadata(issuer, await _get_json(url, "discovery_failed"))
    _discovery_cache[issuer] = (time.monotonic() + DISCOVERY_TTL_SECONDS, metadata)
    return metadata


async def fetch_jwks(metadata: ProviderMetadata, *, force: bool = False) -> dict[str, Any]:
    cached = _jwks_cache.get(metadata.jwks_uri)
    if cached and cached[0] > time.monotonic() and not force:
        return cached[1]
    document = await _get_json(metadata.jwks_uri, "jwks_unavailable")
    if not isinstance(document.get("keys"), list):
        raise OidcError("jwks_unavailable", "the JWKS has no keys")
    _jwks_cache[metadata.jwks_uri] = (time.monotonic() + DISCOVERY_TTL_SECONDS, document)
    return document


def forget_provider(issuer: str) -> None:
    """Drop cached metadata and keys of an issuer (after its configuration changed)."""
    metadata = _discovery_cache.pop(issuer, None)
    if metadata is not None:
        _jwks_cache.pop(metadata[1].jwks_uri, None)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_request(
    metadata: ProviderMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    scope: str,
    login_hint: str = "",
) -> AuthorizationRequest:
    """A fresh ``state``, ``nonce`` and PKCE verifier, and the URL that carries them (with
    the S256 challenge) to the provider's authorization endpoint."""
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters (RFC 7636: 43 to 128)
    client = AsyncOAuth2Client(
        client_id=client_id,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    extra = {"login_hint": login_hint} if login_hint else {}
    url, _ = client.create_authorization_url(
        metadata.authorization_endpoint,
        state=state,
        code_verifier=verifier,
        nonce=nonce,
        **extra,
    )
    return AuthorizationRequest(url, state, nonce, verifier)


async def exchange_code(
    metadata: ProviderMetadata,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> dict[str, Any]:
    """Redeem the authorization code (with the PKCE verifier) at the token endpoint."""
    try:
        async with AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=metadata.token_auth_method(),
            redirect_uri=redirect_uri,
            timeout=HTTP_TIMEOUT_SECONDS,
        ) as client:
            token = await client.fetch_token(
                metadata.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
            )
    except OidcError:
        raise
    except Exception as exc:  # authlib OAuthError, httpx errors, malformed responses
        raise OidcError("token_exchange_failed", type(exc).__name__) from None
    if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
        raise OidcError("id_token_missing", "the token response has no ID token")
    return dict(token)


_CLAIM_REASONS = {
    "iss": "id_token_iss",
    "aud": "id_token_aud",
    "azp": "id_token_aud",
    "exp": "id_token_expired",
    "iat": "id_token_iat",
    "nonce": "id_token_nonce",
}


def _claim_reason(claim: str) -> str:
    return _CLAIM_REASONS.get(claim, "id_token_claims")


def validate_id_token(
    id_token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: tuple[str, ...] = ("RS256",),
    access_token: str | None = None,
    now: int | None = None,
    leeway: int = LEEWAY_SECONDS,
) -> dict[str, Any]:
    """Verify the signature against the provider's keys and the claims (OpenID Connect
    Core 3.1.3.7): ``iss`` is the connection's issuer, ``aud`` contains our client id
    (and ``azp``, when present or needed, is it), ``exp`` is in the future and ``iat``
    not, ``nonce`` is the one we sent, ``sub`` is present, ``at_hash`` matches. Returns
    the claims; raises ``OidcError`` with a reason naming the failed check."""
    allowed = [a for a in algorithms if a in ALLOWED_ALGORITHMS] or ["RS256"]
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError):
        raise OidcError("jwks_unavailable", "the provider's JWKS cannot be read") from None
    try:
        token = jwt.decode(
            id_token, keys, registry=JWSRegistry(algorithms=allowed, strict_check_header=False)
        )
    except InvalidKeyIdError:
        raise OidcError(
            "id_token_unknown_key", "signed with a key the provider does not list"
        ) from None
    except BadSignatureError:
        raise OidcError("id_token_signature", "bad signature") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise OidcError("id_token_signature", f"unreadable token ({type(exc).__name__})") from None
    claims = CodeIDToken(
        token.claims,
        token.header,
        {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        },
        {"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )
    try:
        claims.validate(now=now, leeway=leeway)
    except ExpiredTokenError:
        raise OidcError("id_token_expired", "the ID token has expired") from None
    except (MissingClaimError, InvalidClaimError) as exc:
        claim = str(getattr(exc, "claim", "") or "").split(",")[0]
        if not claim:
            claim = _claim_from_message(str(exc))
        raise OidcError(_claim_reason(claim), str(exc)) from None
    except JoseError as exc:
        raise OidcError("id_token_claims", str(exc)) from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
        raise OidcError("id_token_claims", "unusable subject")
    return dict(claims)


def _claim_from_message(message: str) -> str:
    for claim in _CLAIM_REASONS:
        if f"'{claim}'" in message or f'"{claim}"' in message:
            return claim
    return ""
