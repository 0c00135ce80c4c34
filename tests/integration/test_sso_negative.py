"""OIDC negative cases: each one refused with a clear page (400/403), audited as
``login.failed`` with its reason code, and no session created.

Real providers (oidc-provider, two instances: Initech's and Globex's) give wrong,
replayed and cross-browser states, the RFC 9207 mix-up and a code from another
organization's provider. Tokens no real provider issues (wrong nonce, wrong audience,
expired, dated in the future, signed by another issuer, altered) come from our own small
provider over HTTP (tests/oidc/forge.py)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from core.identity.oidc import s256
from tests.integration import oidc_fixtures as fx
from tests.integration.oidc_fixtures import (
    GLOBEX,
    INITECH,
    SESSION_COOKIE,
    assert_refused,
    browser,
    drive_provider,
    last_login_event,
    session_count,
    sso_login,
    start_login,
)
from tests.oidc.forge import ForgeProvider

oidc_provider = fx.oidc_provider
oidc_provider_b = fx.oidc_provider_b
forge_provider = fx.forge_provider
sso_config = fx.sso_config


def with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


# ------------------------------------------------------------------ with real providers


@pytest.fixture
async def initech(live_server: Any, oidc_provider: Any, sso_config: Any) -> Any:
    await sso_config(
        INITECH, oidc_provider.issuer, oidc_provider.client_id, oidc_provider.client_secret
    )
    return oidc_provider


async def provider_callback(client: httpx.AsyncClient, email: str) -> str:
    """Start at our /sso/start, sign in at the provider; the callback URL, not yet used."""
    app = str(client.base_url).rstrip("/")
    started = await start_login(client, email)
    return await drive_provider(client, started.url, email, app + "/sso/callback")


async def test_wrong_state_is_refused(live_server, initech) -> None:
    before = await session_count()
    async with browser(live_server.url) as client:
        callback = await provider_callback(client, "nia@initech.example")
        response = await client.get(with_query(callback, state=secrets.token_urlsafe(32)))
        await assert_refused(client, response, "state_unknown", sessions_before=before)


async def test_missing_state_is_refused(live_server, initech) -> None:
    before = await session_count()
    async with browser(live_server.url) as client:
        callback = await provider_callback(client, "noa@initech.example")
        response = await client.get(with_query(callback, state=None))
        await assert_refused(client, response, "state_missing", sessions_before=before)


async def test_replayed_state_is_refused(live_server, initech) -> None:
    async with browser(live_server.url) as client:
        callback = await provider_callback(client, "ola+payer@initech.example")
        first = await client.get(callback)
        assert first.status_code == 303, first.text[:500]
        assert SESSION_COOKIE in client.cookies
    before = await session_count()
    # the same response again, from the same browser and from another one
    async with browser(live_server.url) as same:
        response = await same.get(callback)
        await assert_refused(same, response, "state_unknown", sessions_before=before)


async def test_state_from_another_browser_is_refused(live_server, initech) -> None:
    """A login started in the victim's browser cannot be finished in another (and the
    state is gone afterwards, so the victim cannot be forced to finish it either)."""
    before = await session_count()
    async with browser(live_server.url) as victim:
        callback = await provider_callback(victim, "pam+payer@initech.example")
    async with browser(live_server.url) as attacker:
        response = await attacker.get(callback)
        await assert_refused(attacker, response, "state_other_browser", sessions_before=before)
        again = await attacker.get(callback)
        await assert_refused(attacker, again, "state_unknown", sessions_before=before)


async def test_missing_iss_parameter_is_refused_when_the_provider_sends_it(
    live_server, initech
) -> None:
    before = await session_count()
    async with browser(live_server.url) as client:
        callback = await provider_callback(client, "quin+payer@initech.example")
        response = await client.get(with_query(callback, iss=None))
        await assert_refused(client, response, "issuer_missing", sessions_before=before)


@pytest.fixture
async def two_groups(
    live_server: Any, oidc_provider: Any, oidc_provider_b: Any, sso_config: Any
) -> tuple[Any, Any]:
    await sso_config(
        INITECH, oidc_provider.issuer, oidc_provider.client_id, oidc_provider.client_secret
    )
    await sso_config(
        GLOBEX, oidc_provider_b.issuer, oidc_provider_b.client_id, oidc_provider_b.client_secret
    )
    return oidc_provider, oidc_provider_b


async def test_issuer_mix_up_is_refused(live_server, two_groups) -> None:
    """RFC 9207: a browser has a login running with Initech's provider (A) and one with
    Globex's (B). B's response delivered to A's login (its state) says iss=B: refused
    before any code is redeemed; forging iss=A instead gets B's code refused by A."""
    a, b = two_groups
    before = await session_count()
    async with browser(live_server.url) as client:
        initech_login = await start_login(client, "rey@initech.example")
        globex_callback = await provider_callback(client, "rey@globex.example")
        assert parse_qs(urlsplit(globex_callback).query)["iss"] == [b.issuer]
        state_a = initech_login.params["state"]

        mixed = with_query(globex_callback, state=state_a)
        response = await client.get(mixed)
        await assert_refused(client, response, "issuer_mismatch", sessions_before=before)
        event = await last_login_event()
        data = json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]
        assert data["expected"] == a.issuer
        assert data["received"] == b.issuer

    async with browser(live_server.url) as client:
        initech_login = await start_login(client, "rey@initech.example")
        globex_callback = await provider_callback(client, "rey@globex.example")
        forged = with_query(globex_callback, state=initech_login.params["state"], iss=a.issuer)
        response = await client.get(forged)
        await assert_refused(client, response, "token_exchange_failed", sessions_before=before)


# --------------------------------------------------------------------- with the forge


@pytest.fixture
async def forge(
    live_server: Any, forge_provider: ForgeProvider, sso_config: Any
) -> AsyncIterator[ForgeProvider]:
    forge_provider.reset()
    await sso_config(
        INITECH, forge_provider.issuer, forge_provider.client_id, forge_provider.client_secret
    )
    yield forge_provider
    forge_provider.reset()


async def forge_login(client: httpx.AsyncClient, email: str) -> httpx.Response:
    """Through /sso/start to the forge (which approves at once) and back to our callback."""
    started = await start_login(client, email)
    approved = await client.get(started.url)
    assert approved.status_code == 302, approved.text[:300]
    return await client.get(approved.headers["location"])


async def test_forge_control_a_correct_token_signs_in(live_server, forge) -> None:
    """The forge is a faithful provider: with nothing altered, the login succeeds (so
    each refusal below is caused by the one thing altered)."""
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await forge_login(client, "sam+payer@initech.example")
        assert response.status_code == 303, response.text[:800]
        assert SESSION_COOKIE in client.cookies
    assert await session_count() == before + 1
    assert forge.token_requests == 1


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        pytest.param({"nonce": "not-the-nonce-we-sent"}, "id_token_nonce", id="wrong-nonce"),
        pytest.param({"nonce": None}, "id_token_nonce", id="missing-nonce"),
        pytest.param({"aud": "some-other-client"}, "id_token_aud", id="wrong-aud"),
        pytest.param(
            {"aud": ["some-other-client", "another"]}, "id_token_aud", id="wrong-aud-list"
        ),
        pytest.param(
            {"exp": int(time.time()) - 600, "iat": int(time.time()) - 900},
            "id_token_expired",
            id="expired",
        ),
        pytest.param({"iat": int(time.time()) + 3600}, "id_token_iat", id="iat-in-future"),
        pytest.param({"sub": None}, "id_token_claims", id="no-subject"),
    ],
)
async def test_forged_claims_are_refused(
    live_server, forge, override: dict[str, Any], reason: str
) -> None:
    forge.claims_override = override
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await forge_login(client, "tia+payer@initech.example")
        await assert_refused(client, response, reason, sessions_before=before)


async def test_token_claiming_another_organizations_issuer_is_refused(
    live_server, forge, oidc_provider_b
) -> None:
    """Signed with the right key but saying it comes from Globex's provider."""
    forge.claims_override = {"iss": oidc_provider_b.issuer}
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await forge_login(client, "uma+payer@initech.example")
        await assert_refused(client, response, "id_token_iss", sessions_before=before)


async def real_token_from(provider: Any, app_url: str, login: str, nonce: str) -> str:
    """A genuine ID token from ``provider`` (its own client, code flow with PKCE)."""
    verifier = secrets.token_urlsafe(48)
    query = {
        "client_id": provider.client_id,
        "response_type": "code",
        "scope": "openid email profile groups",
        "redirect_uri": provider.redirect_uri,
        "state": secrets.token_urlsafe(16),
        "nonce": nonce,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(timeout=20) as client:
        callback = await drive_provider(
            client,
            f"{provider.issuer}/auth?{urlencode(query)}",
            login,
            app_url + "/sso/callback",
        )
        code = parse_qs(urlsplit(callback).query)["code"][0]
        token = await client.post(
            provider.issuer + "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": provider.redirect_uri,
                "code_verifier": verifier,
                "client_id": provider.client_id,
                "client_secret": provider.client_secret,
            },
        )
    assert token.status_code == 200, token.text
    return token.json()["id_token"]


async def test_genuine_token_of_another_organizations_provider_is_refused(
    live_server, forge, oidc_provider_b
) -> None:
    """A real ID token from Globex's provider (even carrying this login's nonce) handed
    back for Initech's login: not signed by Initech's provider's keys."""
    before = await session_count()
    async with browser(live_server.url) as client:
        started = await start_login(client, "vic+payer@initech.example")
        forge.id_token_override = await real_token_from(
            oidc_provider_b, live_server.url, "vic+admin@globex.example", started.params["nonce"]
        )
        approved = await client.get(started.url)
        response = await client.get(approved.headers["location"])
        await assert_refused(client, response, "id_token_unknown_key", sessions_before=before)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_altered_and_unsigned_tokens_are_refused(live_server, forge) -> None:
    before = await session_count()
    now = int(time.time())
    async with browser(live_server.url) as client:
        started = await start_login(client, "wes+payer@initech.example")
        claims = {
            "iss": forge.issuer,
            "sub": "forge-wes",
            "aud": forge.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": started.params["nonce"],
            "email": "wes+admin@initech.example",
            "groups": ["ledgerline-admin"],
        }
        header, _, signature = forge.sign({**claims, "groups": []}).split(".")
        forge.id_token_override = f"{header}.{_b64(claims)}.{signature}"  # payload swapped
        approved = await client.get(started.url)
        response = await client.get(approved.headers["location"])
        await assert_refused(client, response, "id_token_signature", sessions_before=before)

        started = await start_login(client, "wes+payer@initech.example")
        claims["nonce"] = started.params["nonce"]
        forge.id_token_override = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
        approved = await client.get(started.url)
        response = await client.get(approved.headers["location"])
        await assert_refused(client, response, "id_token_signature", sessions_before=before)


async def test_error_pages_work_without_a_started_login(live_server) -> None:
    """Junk at the callback: a clear page, never a 500."""
    async with browser(live_server.url) as client:
        for query in (
            "",
            "?state=x",
            "?code=abc",
            "?error=access_denied",
            "?state=" + "x" * 5000,
            "?state=a&state=b&code=c",
            "?state=%00%ff",
            "?iss=%00&error=%00",
        ):
            response = await client.get("/sso/callback" + query)
            assert response.status_code == 400, (query, response.status_code)
            assert "Sign-in failed" in response.text


async def test_a_signed_in_user_keeps_nothing_from_a_refused_login(live_server, initech) -> None:
    """A refusal neither signs anyone in nor touches an existing session."""
    async with browser(live_server.url) as client:
        ok = await sso_login(client, "xan+payer@initech.example")
        assert ok.status_code == 303
        sid = client.cookies[SESSION_COOKIE]
        callback = await provider_callback(client, "xan+admin@initech.example")
        response = await client.get(with_query(callback, state="forged"))
        assert response.status_code == 400
        assert client.cookies[SESSION_COOKIE] == sid
        assert (await client.get("/")).status_code == 200
