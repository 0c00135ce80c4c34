"""A minimal OpenID provider of our own, for ID tokens a well-behaved provider never
issues (wrong nonce, wrong audience, expired, dated in the future, another issuer's).

It is a real HTTP server (a small Litestar app under uvicorn, in a thread of the test
process) serving discovery, JWKS, an authorization endpoint that approves at once, and a
token endpoint that checks the client secret (client_secret_post), the exact redirect
URI and the PKCE verifier before it answers with an ID token signed by its own RSA key.
What the next ID token says is up to the test: ``forge.claims_override`` changes claims
(a value of ``None`` removes the claim) and ``forge.id_token_override`` replaces the
token outright.

Unlike oidc-provider it does not advertise RFC 9207 ``iss`` response parameters and does
not send them, so it also exercises the relying party's path for such providers.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from litestar import Litestar, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Response


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class ForgeProvider:
    port: int
    client_id: str
    client_secret: str
    redirect_uri: str
    key: RSAKey = field(init=False)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims_override: dict[str, Any] = field(default_factory=dict)
    id_token_override: str | None = None
    token_requests: int = 0

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(
            2048, parameters={"kid": f"forge-{secrets.token_hex(4)}", "use": "sig"}
        )

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.codes.clear()
        self.claims_override = {}
        self.id_token_override = None
        self.token_requests = 0

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    def id_token_for(self, grant: dict[str, Any]) -> str:
        if self.id_token_override is not None:
            return self.id_token_override
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant["sub"],
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            "email": grant["email"],
            "email_verified": True,
            "name": grant["email"].split("@")[0].title(),
            "groups": grant["groups"],
        }
        for name, value in self.claims_override.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self.sign(claims)

    def app(self) -> Litestar:
        forge = self

        @get("/.well-known/openid-configuration", sync_to_thread=False)
        def discovery() -> dict[str, Any]:
            return {
                "issuer": forge.issuer,
                "authorization_endpoint": forge.issuer + "/authorize",
                "token_endpoint": forge.issuer + "/token",
                "jwks_uri": forge.issuer + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "scopes_supported": ["openid", "email", "profile", "groups"],
            }

        @get("/jwks", sync_to_thread=False)
        def jwks() -> dict[str, Any]:
            return {"keys": [forge.key.as_dict(private=False, alg="RS256")]}

        @get("/authorize", sync_to_thread=False)
        def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
            q = request.query_params
            if (
                q.get("client_id") != forge.client_id
                or q.get("redirect_uri") != forge.redirect_uri
                or q.get("response_type") != "code"
                or q.get("code_challenge_method") != "S256"
                or not q.get("code_challenge")
                or "openid" not in (q.get("scope") or "").split()
            ):
                return Response({"error": "invalid_request"}, status_code=400)
            # login_hint "name+tag@domain": groups "ledgerline-<tag>" as in provider.mjs
            email = (q.get("login_hint") or "someone@initech.example").lower()
            local, domain = email.split("@", 1)
            name, *tags = local.split("+")
            code = secrets.token_urlsafe(24)
            forge.codes[code] = {
                "challenge": q["code_challenge"],
                "nonce": q.get("nonce", ""),
                "email": email,
                "sub": "forge-" + hashlib.sha256(f"{name}@{domain}".encode()).hexdigest()[:24],
                "groups": [f"ledgerline-{t}" for t in tags if t],
            }
            params = {"code": code, "state": q.get("state", "")}
            return Redirect(forge.redirect_uri + "?" + urlencode(params), status_code=302)

        @post("/token", status_code=200, sync_to_thread=False)
        def token(
            data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
        ) -> Response[Any]:
            forge.token_requests += 1
            if (
                data.get("client_id") != forge.client_id
                or data.get("client_secret") != forge.client_secret
            ):
                return Response({"error": "invalid_client"}, status_code=401)
            grant = forge.codes.pop(data.get("code", ""), None)
            if (
                grant is None
                or data.get("grant_type") != "authorization_code"
                or data.get("redirect_uri") != forge.redirect_uri
                or _s256(data.get("code_verifier", "")) != grant["challenge"]
            ):
                return Response({"error": "invalid_grant"}, status_code=400)
            return Response(
                {
                    "access_token": secrets.token_urlsafe(24),
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": forge.id_token_for(grant),
                },
                headers={"Cache-Control": "no-store"},
            )

        return Litestar([discovery, jwks, authorize, token], debug=False)


@contextmanager
def run_forge(
    port: int, *, client_id: str, client_secret: str, redirect_uri: str
) -> Iterator[ForgeProvider]:
    """Serve a ForgeProvider on 127.0.0.1:<port> in a background thread."""
    forge = ForgeProvider(port, client_id, client_secret, redirect_uri)
    server = uvicorn.Server(
        uvicorn.Config(forge.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="forge-oidc", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the forge OpenID provider did not start")
        time.sleep(0.05)
    try:
        yield forge
    finally:
        server.should_exit = True
        thread.join(timeout=10)
