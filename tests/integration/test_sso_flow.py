"""SSO through a real OpenID provider (the npm package oidc-provider, started by a
fixture): the full Authorization Code + PKCE flow driven over HTTP through the
provider's own login and consent pages, just-in-time provisioning, identities keyed by
(issuer, subject), and roles from the ``groups`` claim re-applied at every login."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from core.audit.tables import AuditEvent
from core.identity.sso import sso_required_for_email
from core.identity.tables import ExternalIdentity, SsoConnection, User
from tests.integration import oidc_fixtures as fx
from tests.integration.oidc_fixtures import (
    GLOBEX,
    INITECH,
    SESSION_COOKIE,
    assert_refused,
    browser,
    drive_provider,
    group_nodes,
    last_login_event,
    memberships_of,
    provider_subject,
    session_count,
    sso_login,
    start_login,
    stored_session,
    user_by_subject,
)

# Fixtures (assigned, so that the test parameters of the same name are not redefinitions).
oidc_provider = fx.oidc_provider
oidc_provider_b = fx.oidc_provider_b
sso_config = fx.sso_config


def who(prefix: str, *tags: str, domain: str = "initech.example") -> str:
    """A fresh login name for provider.mjs: name+tag+tag@domain."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    return "+".join([name, *tags]) + f"@{domain}"


async def configure_initech(sso_config: Any, provider: Any, **fields: Any) -> int:
    return await sso_config(
        INITECH, provider.issuer, provider.client_id, provider.client_secret, **fields
    )


async def test_authorization_request_carries_pkce_state_nonce_and_exact_redirect(
    live_server, oidc_provider, sso_config
) -> None:
    await configure_initech(sso_config, oidc_provider)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        started = await start_login(client, "someone@initech.example")
        binding = client.cookies.get("ll_sso")
    p = started.params
    assert started.url.startswith(oidc_provider.issuer + "/auth?")
    assert p["client_id"] == oidc_provider.client_id
    assert p["redirect_uri"] == live_server.url + "/sso/callback"
    assert p["response_type"] == "code"
    assert p["code_challenge_method"] == "S256"
    assert len(p["code_challenge"]) == 43
    assert len(p["state"]) >= 32
    assert len(p["nonce"]) >= 32
    assert set(p["scope"].split()) == {"openid", "email", "profile", "groups"}
    assert p["login_hint"] == "someone@initech.example"
    assert binding, "the flow is bound to this browser by an HttpOnly cookie"
    # Nothing of the flow travels in the cookie: state, nonce and verifier stay in Redis.
    assert p["state"] not in binding
    assert p["nonce"] not in binding


async def test_full_code_flow_provisions_just_in_time_and_signs_in(
    live_server, oidc_provider, sso_config
) -> None:
    nodes = await group_nodes(INITECH)
    await configure_initech(sso_config, oidc_provider)
    login = who("erin", "payer")
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await sso_login(client, login)
        assert response.status_code == 303, response.text[:800]
        assert response.headers["location"] == "/"
        assert SESSION_COOKIE in client.cookies
        assert "ll_sso" not in client.cookies, "the binding cookie is cleared after use"
        session = await stored_session(client.cookies[SESSION_COOKIE])
        assert session is not None
        assert session["auth_method"] == "sso"
        assert session["stage"] == "full"
        dashboard = await client.get("/")
        assert dashboard.status_code == 200
        assert "Dashboard" in dashboard.text
    assert await session_count() == before + 1

    user = await user_by_subject(oidc_provider.issuer, provider_subject(login))
    assert user is not None, "an identity keyed by (issuer, subject) was linked"
    assert session["user_id"] == user["id"]
    assert user["email"] == login
    assert user["organization"] == nodes[INITECH]
    assert user["password_hash"] == ""
    assert await memberships_of(user["id"]) == {nodes[INITECH]: "payer"}
    event = await last_login_event()
    assert event["action"] == "login.succeeded"
    data = json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]
    assert data["method"] == "sso"
    assert data["provisioned"] is True
    assert await AuditEvent.exists().where(
        (AuditEvent.action == "user.provisioned") & (AuditEvent.object_id == str(user["id"]))
    )


async def test_default_role_when_no_group_is_mapped(live_server, oidc_provider, sso_config) -> None:
    nodes = await group_nodes(INITECH)
    await configure_initech(sso_config, oidc_provider, default_role="viewer")
    login = who("fay")  # no groups at all
    async with browser(live_server.url) as client:
        response = await sso_login(client, login)
    assert response.status_code == 303
    user = await user_by_subject(oidc_provider.issuer, provider_subject(login))
    assert user is not None
    assert await memberships_of(user["id"]) == {nodes[INITECH]: "viewer"}


async def test_roles_from_claims_are_reapplied_at_every_login(
    live_server, oidc_provider, sso_config
) -> None:
    nodes = await group_nodes(INITECH)
    software = nodes["Initech Software Inc."]
    await configure_initech(sso_config, oidc_provider, default_role="viewer")
    name = f"gus{uuid.uuid4().hex[:8]}"
    email = f"{name}@initech.example"
    subject = provider_subject(email)

    # 1st login: admin of the whole group and approver at the software subsidiary.
    async with browser(live_server.url) as client:
        response = await sso_login(client, email, f"{name}+admin+software-approver@initech.example")
    assert response.status_code == 303
    user = await user_by_subject(oidc_provider.issuer, subject)
    assert user is not None
    assert await memberships_of(user["id"]) == {nodes[INITECH]: "admin", software: "approver"}

    # 2nd login, same person (same subject); the provider now says: software viewer only.
    async with browser(live_server.url) as client:
        response = await sso_login(client, email, f"{name}+software-viewer@initech.example")
    assert response.status_code == 303
    again = await user_by_subject(oidc_provider.issuer, subject)
    assert again is not None
    assert again["id"] == user["id"], "the same user, not a new one"
    assert await memberships_of(user["id"]) == {software: "viewer"}
    assert await ExternalIdentity.count().where(ExternalIdentity.subject == subject) == 1

    # 3rd: no default role and no mapped group: the provider no longer vouches for a role.
    await configure_initech(sso_config, oidc_provider, default_role="")
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await sso_login(client, email, f"{name}+unrelated@initech.example")
        await assert_refused(client, response, "no_role", sessions_before=before, status=403)
    assert await memberships_of(user["id"]) == {software: "viewer"}, "a refusal changes nothing"


async def test_deactivated_user_cannot_get_in(live_server, oidc_provider, sso_config) -> None:
    await configure_initech(sso_config, oidc_provider)
    login = who("hal", "payer")
    async with browser(live_server.url) as client:
        response = await sso_login(client, login)
    assert response.status_code == 303
    user = await user_by_subject(oidc_provider.issuer, provider_subject(login))
    assert user is not None
    await User.update({User.is_active: False}).where(User.id == user["id"])
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await sso_login(client, login)
        await assert_refused(client, response, "user_inactive", sessions_before=before, status=403)


async def test_identity_is_never_matched_by_email_alone(
    live_server, oidc_provider, sso_config
) -> None:
    """carol@initech.example has a local account; a provider identity with her email but
    no link is not her: refused, and her account is untouched."""
    await configure_initech(sso_config, oidc_provider, default_role="viewer")
    carol = await User.select().where(User.email == "carol@initech.example").first()
    assert carol is not None
    carol_roles = await memberships_of(carol["id"])
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await sso_login(client, "carol@initech.example")
        await assert_refused(client, response, "email_in_use", sessions_before=before, status=403)
    assert await memberships_of(carol["id"]) == carol_roles
    assert not await ExternalIdentity.exists().where(ExternalIdentity.user == carol["id"])


async def test_without_default_role_there_is_no_jit(live_server, oidc_provider, sso_config) -> None:
    await configure_initech(sso_config, oidc_provider, default_role="")
    before = await session_count()
    async with browser(live_server.url) as client:
        response = await sso_login(client, who("ivy", "admin"))
        await assert_refused(client, response, "jit_disabled", sessions_before=before, status=403)


async def test_unverified_email_or_foreign_domain_is_not_provisioned(
    live_server, oidc_provider, sso_config
) -> None:
    await configure_initech(sso_config, oidc_provider, domains="initech.example")
    before = await session_count()
    # Routed to Initech's provider by the typed email, but the provider vouches for an
    # address in a domain Initech does not own.
    async with browser(live_server.url) as client:
        response = await sso_login(
            client, "jo@initech.example", who("jo", "admin", domain="elsewhere.example")
        )
        await assert_refused(
            client, response, "domain_not_allowed", sessions_before=before, status=403
        )
    async with browser(live_server.url) as client:
        response = await sso_login(client, who("kim", "admin", "unverified"))
        await assert_refused(
            client, response, "email_not_verified", sessions_before=before, status=403
        )


async def test_provider_refusal_access_denied(live_server, oidc_provider, sso_config) -> None:
    await configure_initech(sso_config, oidc_provider)
    before = await session_count()
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        started = await start_login(client, "lee@initech.example")
        callback = await drive_provider(
            client,
            started.url,
            "lee@initech.example",
            live_server.url + "/sso/callback",
            cancel=True,
        )
        assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
        response = await client.get(callback)
        await assert_refused(client, response, "provider_error", sessions_before=before, status=403)


async def test_unknown_domain_and_bad_email_get_a_clear_page(live_server) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        page = await client.get("/sso/start")
        assert page.status_code == 200
        assert "Sign in with your company account" in page.text
        unknown = await client.get("/sso/start", params={"email": "x@nowhere.example"})
        assert unknown.status_code == 404
        assert "not set up for that email" in unknown.text
        bad = await client.get("/sso/start", params={"email": "not-an-email"})
        assert bad.status_code == 400
        for weird in ("a" * 5000 + "@x.example", "\x00@x.example", "@", "é@ü.example"):
            response = await client.get("/sso/start", params={"email": weird})
            assert response.status_code in (400, 404), weird


async def test_disabled_connection_and_sso_required_lookup(
    live_server, oidc_provider, sso_config
) -> None:
    await configure_initech(sso_config, oidc_provider, sso_required=True)
    required = await sso_required_for_email("Dan@Initech.example")
    assert required is not None
    assert required.issuer == oidc_provider.issuer
    assert await sso_required_for_email("alice@globex.example") is None

    await configure_initech(sso_config, oidc_provider, enabled=False)
    assert await sso_required_for_email("dan@initech.example") is None
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        response = await client.get("/sso/start", params={"email": "dan@initech.example"})
        assert response.status_code == 404


async def test_two_groups_two_providers(
    live_server, oidc_provider, oidc_provider_b, sso_config
) -> None:
    """Each group's users go to their own provider and land in their own group."""
    globex_nodes = await group_nodes(GLOBEX)
    await configure_initech(sso_config, oidc_provider)
    await sso_config(
        GLOBEX,
        oidc_provider_b.issuer,
        oidc_provider_b.client_id,
        oidc_provider_b.client_secret,
        default_role="viewer",
    )
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        started = await start_login(client, "max@globex.example")
    assert started.url.startswith(oidc_provider_b.issuer + "/auth?")
    login = who("max", domain="globex.example")
    async with browser(live_server.url) as client:
        response = await sso_login(client, login)
    assert response.status_code == 303, response.text[:800]
    user = await user_by_subject(oidc_provider_b.issuer, provider_subject(login))
    assert user is not None
    assert user["organization"] == globex_nodes[GLOBEX]
    assert await user_by_subject(oidc_provider.issuer, provider_subject(login)) is None


async def test_client_secret_is_encrypted_at_rest(oidc_provider, sso_config) -> None:
    await configure_initech(sso_config, oidc_provider)
    row = await SsoConnection.select().where(SsoConnection.issuer == oidc_provider.issuer).first()
    assert row is not None
    assert oidc_provider.client_secret not in row["client_secret_enc"]
    event = (
        await AuditEvent.select()
        .where(AuditEvent.action == "sso.configured")
        .order_by(AuditEvent.id, ascending=False)
        .first()
    )
    assert event is not None
    assert oidc_provider.client_secret not in str(event["data"])
