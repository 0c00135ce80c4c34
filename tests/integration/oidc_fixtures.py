"""Fixtures and helpers for the SSO tests (import the names you use).

* ``oidc_provider`` and ``oidc_provider_b``: two real OpenID providers, the npm package
  ``oidc-provider`` (tests/oidc/provider.mjs, whose header documents how a login name
  becomes claims), each on a free port of 127.0.0.1 with one client whose redirect URI
  is the live server's ``/sso/callback``.
* ``forge_provider``: our own small provider (tests/oidc/forge.py) for ID tokens no real
  provider issues.
* ``sso_config``: configures a demo group's connection through the real service
  (``core.identity.sso.configure_connection``) and, at teardown, removes the connections,
  the users SSO provisioned and their links and memberships, so the demo data is as it
  was for the other tests.
* ``drive_provider``: walks a provider's dev login and consent pages with httpx, as a
  browser would, and returns the redirect to our callback without following it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from core import crypto
from core.audit.log import Actor
from core.audit.tables import AuditEvent
from core.identity.sso import MappingRow, SsoInput, configure_connection
from core.identity.tables import (
    CustomerOrganization,
    ExternalIdentity,
    Membership,
    SsoConnection,
    User,
)
from core.settings import load_settings
from tests.conftest import ROOT, TEST_REDIS_URL, free_port, server_env
from tests.oidc.forge import ForgeProvider, run_forge

PROVIDER_JS = ROOT / "tests" / "oidc" / "provider.mjs"
SESSION_COOKIE = "ledgerline_session"
TEST_ACTOR = Actor.system("sso-tests")
_CONTINUE = re.compile(r'<a href="([^"]+)" role="button" data-testid="sso-continue"')
_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)


@dataclass
class OidcProvider:
    """A running oidc-provider instance with one registered client."""

    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    log: Path


@contextmanager
def run_oidc_provider(
    log_dir: Path,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    auth_method: str = "client_secret_basic",
) -> Iterator[OidcProvider]:
    """Start tests/oidc/provider.mjs with node on a free port; wait for its discovery."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: the SSO tests run the npm package oidc-provider")
    if not (ROOT / "node_modules" / "oidc-provider").exists():
        pytest.fail(f"oidc-provider is missing: run `npm ci` in {ROOT}")
    port = free_port()
    clients = [
        {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": auth_method,
        }
    ]
    log = log_dir / f"oidc-provider-{port}.log"
    issuer = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(
            [node, str(PROVIDER_JS), str(port), json.dumps(clients)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(
                        issuer + "/.well-known/openid-configuration", timeout=2
                    ).is_success:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"oidc-provider did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.1)
            yield OidcProvider(issuer, client_id, client_secret, redirect_uri, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def oidc_provider(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Provider "A" (used for Initech Group), authenticating its client with HTTP Basic."""
    with run_oidc_provider(
        tmp_path_factory.mktemp("oidc-a"),
        client_id="ledgerline-initech",
        client_secret="initech-secret-" + "a" * 24,
        redirect_uri=live_server.url + "/sso/callback",
    ) as provider:
        yield provider


@pytest.fixture(scope="session")
def oidc_provider_b(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Provider "B" (another organization's, used for Globex Holdings), client_secret_post."""
    with run_oidc_provider(
        tmp_path_factory.mktemp("oidc-b"),
        client_id="ledgerline-globex",
        client_secret="globex-secret-" + "b" * 24,
        redirect_uri=live_server.url + "/sso/callback",
        auth_method="client_secret_post",
    ) as provider:
        yield provider


@pytest.fixture(scope="session")
def forge_provider(live_server: Any) -> Iterator[ForgeProvider]:
    with run_forge(
        free_port(),
        client_id="ledgerline-forge",
        client_secret="forge-secret-" + "f" * 24,
        redirect_uri=live_server.url + "/sso/callback",
    ) as forge:
        yield forge


# ------------------------------------------------------------------ configuring connections


async def group_nodes(root_name: str) -> dict[str, int]:
    """name -> id of every node of the demo group named ``root_name``."""
    root = (
        await CustomerOrganization.select(CustomerOrganization.path)
        .where(CustomerOrganization.name == root_name)
        .first()
    )
    assert root is not None, root_name
    rows = await CustomerOrganization.select(
        CustomerOrganization.id, CustomerOrganization.name
    ).where(CustomerOrganization.path.like(root["path"] + "%"))
    return {r["name"]: r["id"] for r in rows}


INITECH = "Initech Group"
GLOBEX = "Globex Holdings"


def initech_mapping(nodes: dict[str, int]) -> tuple[MappingRow, ...]:
    """The claim mapping the tests use for Initech (groups from provider.mjs's +tags)."""
    root = nodes[INITECH]
    software = nodes["Initech Software Inc."]
    return (
        MappingRow("ledgerline-admin", "admin", root),
        MappingRow("ledgerline-payer", "payer", root),
        MappingRow("ledgerline-software-viewer", "viewer", software),
        MappingRow("ledgerline-software-approver", "approver", software),
    )


ConfigureSso = Callable[..., Awaitable[int]]


@pytest.fixture
async def sso_config(demo_db: Any, tmp_path: Path) -> AsyncIterator[ConfigureSso]:
    """``await sso_config(group, issuer, client_id, client_secret, **fields)`` configures
    (or reconfigures) the connection of a demo group and returns the group root's id.
    Everything SSO created in the demo database is removed afterwards."""
    settings = load_settings(server_env("postgresql://unused/none", tmp_path))
    crypto.configure(settings.encryption_keys)  # the live server's keys
    max_user = (await User.select(User.id).order_by(User.id, ascending=False).first()) or {"id": 0}
    issuers: set[str] = set()
    roots: set[int] = set()

    async def configure(
        group: str,
        issuer: str,
        client_id: str,
        client_secret: str = "",
        *,
        domains: str | None = None,
        mapping: tuple[MappingRow, ...] | None = None,
        default_role: str = "viewer",
        role_claim: str = "groups",
        sso_required: bool = False,
        enabled: bool = True,
    ) -> int:
        nodes = await group_nodes(group)
        if mapping is None:
            mapping = initech_mapping(nodes) if group == INITECH else ()
        if domains is None:
            domains = "initech.example" if group == INITECH else "globex.example"
        issuers.add(issuer)
        roots.add(nodes[group])
        await configure_connection(
            nodes[group],
            SsoInput(
                issuer=issuer,
                client_id=client_id,
                client_secret=client_secret,
                allowed_domains=domains,
                role_claim=role_claim,
                mapping=mapping,
                default_role=default_role,
                sso_required=sso_required,
                enabled=enabled,
            ),
            TEST_ACTOR,
        )
        return nodes[group]

    yield configure

    links = await ExternalIdentity.select(ExternalIdentity.id, ExternalIdentity.user).where(
        ExternalIdentity.issuer.is_in(sorted(issuers) or [""])
    )
    new_users = [r["id"] for r in await User.select(User.id).where(User.id > max_user["id"])]
    await ExternalIdentity.delete().where(
        ExternalIdentity.id.is_in([r["id"] for r in links] or [-1])
    )
    await ExternalIdentity.delete().where(ExternalIdentity.user.is_in(new_users or [-1]))
    await Membership.delete().where(Membership.user.is_in(new_users or [-1]))
    await User.delete().where(User.id.is_in(new_users or [-1]))
    await SsoConnection.delete().where(SsoConnection.organization.is_in(sorted(roots) or [-1]))


# ------------------------------------------------------------------------ driving a login


@dataclass
class Started:
    """The answer of /sso/start: the authorization URL and its parameters."""

    url: str
    params: dict[str, str]


async def start_login(client: httpx.AsyncClient, email: str) -> Started:
    response = await client.get("/sso/start", params={"email": email})
    assert response.status_code == 200, response.text[:500]
    match = _CONTINUE.search(response.text)
    assert match, "no continue link on /sso/start"
    url = unescape(match.group(1))
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return Started(url, params)


async def drive_provider(
    client: httpx.AsyncClient,
    authorization_url: str,
    login: str,
    callback_prefix: str,
    *,
    cancel: bool = False,
) -> str:
    """Follow the provider's redirects, submit its dev login form (any password) and its
    consent form; return the URL it finally redirects to under ``callback_prefix``. With
    ``cancel``, follow the login page's "Cancel" link instead."""
    url = authorization_url
    method, data = "GET", None
    for _ in range(20):
        response = await client.request(method, url, data=data)
        method, data = "GET", None
        if response.status_code in (302, 303):
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(callback_prefix):
                return location
            url = location
            continue
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:300]}"
        html = response.text
        form = _FORM.search(html)
        assert form, f"no form on the provider page {url}: {html[:300]}"
        action = urljoin(str(response.url), unescape(form.group(1)))
        if 'name="login"' in html:
            if cancel:
                abort = re.search(r'href="([^"]+/abort)"', html)
                assert abort
                url = unescape(abort.group(1))
                continue
            url, method, data = action, "POST", {"prompt": "login", "login": login, "password": "x"}
        elif 'value="consent"' in html:
            url, method, data = action, "POST", {"prompt": "consent"}
        else:
            raise AssertionError(f"unexpected provider page {url}: {html[:300]}")
    raise AssertionError("too many steps at the provider")


def browser(app_url: str) -> httpx.AsyncClient:
    """A fresh cookie jar, as a new browser would have (use with ``async with``)."""
    return httpx.AsyncClient(base_url=app_url, timeout=20, follow_redirects=False)


async def sso_login(
    client: httpx.AsyncClient, email: str, login: str | None = None
) -> httpx.Response:
    """Sign in through SSO with ``client``: /sso/start with ``email``, the provider's pages
    as ``login`` (default: the email), and our answer to the callback."""
    app_url = str(client.base_url).rstrip("/")
    started = await start_login(client, email)
    callback = await drive_provider(client, started.url, login or email, app_url + "/sso/callback")
    return await client.get(callback)


# ----------------------------------------------------------------------------- checking


def provider_subject(login: str) -> str:
    """The ``sub`` tests/oidc/provider.mjs gives a login name (the +tags do not count)."""
    email = login.lower() if "@" in login else f"{login.lower()}@initech.example"
    local, domain = email.split("@")
    base = f"{local.split('+')[0]}@{domain}"
    return "acct-" + hashlib.sha256(base.encode()).hexdigest()[:24]


async def session_count() -> int:
    """Successful sign-ins so far, from this run's audit log (the only way our code makes a
    session; Redis itself is shared with any other test run on the machine, so counting
    its keys would not be reliable)."""
    return await AuditEvent.count().where(AuditEvent.action == "login.succeeded")


async def stored_session(sid: str) -> dict[str, Any] | None:
    """The server-side session behind a cookie value, as stored in Redis."""
    redis = Redis.from_url(TEST_REDIS_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=f"ll:*:session:{sid}")]
        raw = await redis.get(keys[0]) if keys else None
    finally:
        await redis.aclose()
    return None if raw is None else json.loads(raw)


async def last_login_event() -> dict[str, Any]:
    row = (
        await AuditEvent.select()
        .where(AuditEvent.action.is_in(["login.failed", "login.succeeded"]))
        .order_by(AuditEvent.id, ascending=False)
        .first()
    )
    assert row is not None
    return row


async def assert_refused(
    client: httpx.AsyncClient,
    response: httpx.Response,
    reason: str,
    *,
    sessions_before: int,
    status: int = 400,
) -> None:
    """A clear refusal page, the reason audited, and no session anywhere."""
    assert response.status_code == status, (response.status_code, response.text[:800])
    assert "Sign-in failed" in response.text
    assert 'data-testid="sso-error"' in response.text
    assert f'data-testid="sso-reason">{reason}<' in response.text, response.text[:1500]
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert SESSION_COOKIE not in client.cookies
    assert await session_count() == sessions_before
    dashboard = await client.get("/")
    assert dashboard.status_code in (302, 303), "signed in after a refusal"
    event = await last_login_event()
    assert event["action"] == "login.failed"
    assert event["reason_code"] == reason
    data = json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]
    assert data["method"] == "sso"


async def user_by_subject(issuer: str, subject: str) -> dict[str, Any] | None:
    link = (
        await ExternalIdentity.select(ExternalIdentity.user)
        .where((ExternalIdentity.issuer == issuer) & (ExternalIdentity.subject == subject))
        .first()
    )
    if link is None:
        return None
    return await User.select().where(User.id == link["user"]).first()


async def memberships_of(user_id: int) -> dict[int, str]:
    rows = await Membership.select(Membership.organization, Membership.role).where(
        Membership.user == user_id
    )
    return {r["organization"]: r["role"] for r in rows}
